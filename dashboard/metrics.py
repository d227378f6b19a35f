"""The contract's metrics (section 2) as pure functions, with no I/O.

Three layers use them:

- ``pair_samples`` and ``shift_intervals`` turn the events of some routes,
  orders or workers into latency samples and shifts, whatever order the
  events came in; the ingest worker runs them on the events a batch touches.
- rollup fields are what rollups add up per bucket (counts and histogram
  buckets); labor cost is summed from shifts at query time; ``finalize``
  turns summed fields and labor into the contract's answer.
- ``reference_metrics`` computes the answer straight from a list of events,
  exactly (true p95s): the yardstick for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Histogram buckets: bucket 0 holds [0, 1) s; bucket b >= 1 holds
# [GAMMA**(b-1), GAMMA**b). Reporting a bucket's geometric middle is off by at
# most sqrt(GAMMA) - 1 = 1.49 % (or 0.5 s in bucket 0): inside the contract's
# max(1 s, 2 %).
GAMMA = 1.03
_LOG_GAMMA = math.log(GAMMA)

# Latency kinds: (sample kind, rollup field prefix, response field).
IDLE, DOCK, READY = "idle", "dock", "r2t"
KINDS = {IDLE: "p95_driver_idle_s", DOCK: "p95_dock_wait_s", READY: "p95_ready_to_truck_s"}

COUNT_FIELDS = ("attempts", "deliveries", "on_time", "first_attempts", "first_attempt_delivered")
FAIL_PREFIX = "fail:"

Fields = dict[str, float]
# Rollup grains, coarsest first: day, hour, minute.
GRAIN_SIZES = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Key = tuple[str, str]  # (source, id)


def bucket_of(seconds: float) -> int:
    """Return the histogram bucket of a latency in seconds."""
    if seconds < 1:
        return 0
    return 1 + int(math.floor(math.log(seconds) / _LOG_GAMMA + 1e-12))


def bucket_value(bucket: int) -> float:
    """Return the value a bucket stands for (its geometric middle)."""
    if bucket == 0:
        return 0.5
    return GAMMA ** (bucket - 0.5)


def nearest_rank(sorted_values: list[float], fraction: float = 0.95) -> float | None:
    """Return the nearest-rank percentile of ascending values, or None for none."""
    if not sorted_values:
        return None
    return sorted_values[math.ceil(fraction * len(sorted_values)) - 1]


def histogram_percentile(counts: Mapping[int, float], fraction: float = 0.95) -> float | None:
    """Return the nearest-rank percentile of a histogram {bucket: count}."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = math.ceil(fraction * round(total))
    seen = 0.0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(counts))


# -- events in the shape the pure functions need ------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """The fields of one event that metrics look at."""

    key: Key
    type: str
    site_id: str
    time: datetime
    data: Mapping[str, Any]

    @classmethod
    def from_event(cls, raw: Mapping[str, Any]) -> Fact:
        """Build from a contract event (a parsed JSON object)."""
        data = raw["data"]
        return cls((raw["source"], raw["id"]), raw["type"], data["site_id"], parse_time(raw["time"]), data)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (already validated)."""
    return datetime.fromisoformat(text.upper())


# -- samples from pairs ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """A latency sample, attributed to its anchor event's site and time."""

    kind: str
    anchor: Key
    group_key: str  # the route (dock wait, idle) or order (ready to truck) it belongs to
    site_id: str
    time: datetime
    value: float


def _partner(candidates: list[Fact], moment: datetime) -> Fact | None:
    """Return the latest candidate at or before ``moment``, else None."""
    best = None
    for fact in candidates:
        if fact.time <= moment and (best is None or (fact.time, fact.key) > (best.time, best.key)):
            best = fact
    return best


def _departure(candidates: list[Fact], moment: datetime) -> Fact | None:
    """Return the departure that precedes an arrival: the latest at or before, else the earliest."""
    if not candidates:
        return None
    return _partner(candidates, moment) or min(candidates, key=lambda f: (f.time, f.key))


def pair_samples(facts: Iterable[Fact]) -> dict[tuple[str, Key], Sample]:
    """Return every latency sample the given events complete, keyed by (kind, anchor)."""
    arrivals: dict[str, list[Fact]] = defaultdict(list)
    loadings: list[Fact] = []
    departures: dict[tuple[str, int], list[Fact]] = defaultdict(list)  # (route, seq); truck = seq 0
    stop_arrivals: list[Fact] = []
    packings: dict[str, list[Fact]] = defaultdict(list)
    loads: list[Fact] = []
    for fact in facts:
        data = fact.data
        if fact.type == "truck.arrived":
            arrivals[data["route_id"]].append(fact)
        elif fact.type == "truck.loading_started":
            loadings.append(fact)
        elif fact.type == "truck.departed":
            departures[(data["route_id"], 0)].append(fact)
        elif fact.type == "stop.departed":
            departures[(data["route_id"], data["stop_seq"])].append(fact)
        elif fact.type == "stop.arrived":
            stop_arrivals.append(fact)
        elif fact.type == "order.packed":
            packings[data["order_id"]].append(fact)
        elif fact.type == "order.loaded":
            loads.append(fact)

    samples: dict[tuple[str, Key], Sample] = {}

    def add(kind: str, anchor: Fact, group_key: str, value: float) -> None:
        samples[(kind, anchor.key)] = Sample(kind, anchor.key, group_key, anchor.site_id, anchor.time, value)

    for loading in loadings:
        arrival = _partner(arrivals.get(loading.data["route_id"], []), loading.time)
        if arrival is not None:
            add(DOCK, loading, loading.data["route_id"], (loading.time - arrival.time).total_seconds())
    for stop in stop_arrivals:
        previous = _departure(departures.get((stop.data["route_id"], stop.data["stop_seq"] - 1), []), stop.time)
        if previous is not None:
            drive = (stop.time - previous.time).total_seconds()
            add(IDLE, stop, stop.data["route_id"], max(0.0, drive - stop.data["planned_drive_s"]))
    for load in loads:
        packing = _partner(packings.get(load.data["order_id"], []), load.time)
        if packing is not None:
            add(READY, load, load.data["order_id"], (load.time - packing.time).total_seconds())
    return samples


# -- shifts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shift:
    """A worker's shift: from a shift_started to its next shift_ended (None: open)."""

    start_key: Key
    worker_id: str
    site_id: str
    start: datetime
    end: datetime | None
    hourly_cost: float

    def cost_between(self, start: datetime, end: datetime, now: datetime) -> float:
        """Return the labor cost of the part of the shift inside [start, end)."""
        shift_end = self.end if self.end is not None else max(now, self.start)
        overlap = (min(end, shift_end) - max(start, self.start)).total_seconds()
        return max(0.0, overlap) * self.hourly_cost / 3600


def shift_intervals(facts: Iterable[Fact]) -> dict[Key, Shift]:
    """Pair each shift_started with the worker's next shift_ended; keyed by the start event."""
    starts: list[Fact] = []
    ends: dict[str, list[datetime]] = defaultdict(list)
    for fact in facts:
        if fact.type == "worker.shift_started":
            starts.append(fact)
        elif fact.type == "worker.shift_ended":
            ends[fact.data["worker_id"]].append(fact.time)
    shifts = {}
    for start in starts:
        worker = start.data["worker_id"]
        later = [moment for moment in ends.get(worker, ()) if moment >= start.time]
        shifts[start.key] = Shift(
            start.key, worker, start.site_id, start.time, min(later) if later else None, start.data["hourly_cost"]
        )
    return shifts


# -- what one event or sample adds to its bucket --------------------------------------


def attempt_fields(data: Mapping[str, Any], time: datetime) -> Fields:
    """Return the count fields a delivery.attempted adds to the bucket of its time."""
    delivered = data["outcome"] == "delivered"
    first = data["attempt"] == 1
    fields: Fields = {"attempts": 1}
    if delivered:
        fields["deliveries"] = 1
        if parse_time(data["promised_start"]) <= time <= parse_time(data["promised_end"]):
            fields["on_time"] = 1
    else:
        fields[FAIL_PREFIX + data["failure_reason"]] = 1
    if first:
        fields["first_attempts"] = 1
        if delivered:
            fields["first_attempt_delivered"] = 1
    return fields


def sample_field(kind: str, value: float) -> str:
    """Return the rollup field of a sample's histogram bucket."""
    return f"{kind}:{bucket_of(value)}"


def labor_by_bucket(
    shifts: Iterable[Shift], first: datetime, size: timedelta, count: int, end: datetime, now: datetime
) -> list[float]:
    """Return the labor cost in each of ``count`` buckets of ``size`` from ``first``, the range cut at ``end``."""
    totals = [0.0] * count
    for shift in shifts:
        shift_end = shift.end if shift.end is not None else max(now, shift.start)
        low, high = max(shift.start, first), min(shift_end, end, first + size * count)
        index = int((low - first) // size) if high > low else count
        while index < count and first + size * index < high:
            bucket = first + size * index
            totals[index] += shift.cost_between(bucket, min(bucket + size, end), now)
            index += 1
    return totals


# -- from summed fields to the contract's answer --------------------------------------


def finalize(fields: Mapping[str, float], labor: float = 0.0) -> dict[str, Any]:
    """Return the contract's metric fields from the summed rollup fields and the labor cost of a range."""
    attempts = int(round(fields.get("attempts", 0)))
    deliveries = int(round(fields.get("deliveries", 0)))
    first_attempts = int(round(fields.get("first_attempts", 0)))
    histograms: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}
    failures: dict[str, int] = {}
    for name, value in fields.items():
        prefix, _, rest = name.partition(":")
        if prefix in histograms and value > 0.5:
            histograms[prefix][int(rest)] = value
        elif name.startswith(FAIL_PREFIX) and value > 0.5:
            failures[rest] = int(round(value))
    result: dict[str, Any] = {
        "attempts": attempts,
        "deliveries": deliveries,
        "on_time_rate": fields.get("on_time", 0) / deliveries if deliveries else None,
        "first_attempt_rate": fields.get("first_attempt_delivered", 0) / first_attempts if first_attempts else None,
        "failure_reasons": dict(sorted(failures.items())),
    }
    for kind, name in KINDS.items():
        result[name] = histogram_percentile(histograms[kind])
    result["labor_cost"] = round(labor, 9) if abs(labor) > 1e-9 else 0.0
    result["cost_per_delivery"] = labor / deliveries if deliveries else None
    return result


def reference_metrics(
    events: Iterable[Mapping[str, Any]], site_id: str | None, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Compute the metrics of a range straight from events, exactly (the first of a key wins)."""
    facts: dict[Key, Fact] = {}
    for raw in events:
        fact = Fact.from_event(raw)
        facts.setdefault(fact.key, fact)

    def counts(fact: Fact) -> bool:
        return (site_id is None or fact.site_id == site_id) and start <= fact.time < end

    totals: Counter[str] = Counter()
    for fact in facts.values():
        if fact.type == "delivery.attempted" and counts(fact):
            totals.update(attempt_fields(fact.data, fact.time))
    values: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for sample in pair_samples(facts.values()).values():
        if (site_id is None or sample.site_id == site_id) and start <= sample.time < end:
            values[sample.kind].append(sample.value)
    labor = sum(
        shift.cost_between(start, end, now)
        for shift in shift_intervals(facts.values()).values()
        if site_id is None or shift.site_id == site_id
    )
    result = finalize(totals, labor)
    for kind, name in KINDS.items():
        result[name] = nearest_rank(sorted(values[kind]))
    return result


# -- covering a range with rollup buckets ------------------------------------------


def window_buckets(start: datetime, end: datetime, grains: tuple[str, ...]) -> list[tuple[str, datetime, datetime]]:
    """Cover [start, end) (whole minutes) with the fewest buckets: (grain, first, stop) ranges."""
    grain, rest = grains[0], grains[1:]
    if not rest:
        return [(grain, start, end)] if start < end else []
    size = GRAIN_SIZES[grain]
    first = _EPOCH + -((_EPOCH - start) // size) * size  # start rounded up to the grain
    stop = _EPOCH + ((end - _EPOCH) // size) * size  # end rounded down
    if first >= stop:
        return window_buckets(start, end, rest)
    return [*window_buckets(start, first, rest), (grain, first, stop), *window_buckets(stop, end, rest)]


def each_bucket(ranges: Iterable[tuple[str, datetime, datetime]]) -> list[tuple[str, datetime]]:
    """Expand (grain, first, stop) ranges into single (grain, bucket) pieces."""
    pieces = []
    for grain, first, stop in ranges:
        cursor = first
        while cursor < stop:
            pieces.append((grain, cursor))
            cursor += GRAIN_SIZES[grain]
    return pieces
