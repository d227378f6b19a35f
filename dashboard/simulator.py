"""A simulated last-mile network: sites, shifts, orders, docks, routes, stops and faults.

The model advances minute by minute. Each minute, per site: shifts start and
end, orders arrive (demand varies by hour), pickers and packers on shift
work through their queues, and at wave times packed orders are grouped into
routes whose trucks queue for the open doors, load and leave; each route's
stops, delivery attempts and delays are scheduled as the truck departs.
Failed orders are packed again and re-attempted the next day.

Every event goes into a heap by event time; ``Simulation.run`` yields those
whose time has come, so one engine serves both the fast history run and the
real-time ``--live`` run. The same seed and end time give the same events.

Degradation modes are read every simulated minute (see docs/simulator.md for
what each one does); scenarios make things go wrong on one site.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from dashboard.ingest import Backpressure, Ingestor
from dashboard.modes import in_force
from dashboard.stream import StoreUnavailable

log = logging.getLogger(__name__)

SCENARIOS = (
    "dock_outage",
    "picker_sick_wave",
    "driver_delay_wave",
    "eta_unreliable",
    "wms_slowdown",
    "demand_spike",
)
SITE_CODES = ("SEA", "PDX", "SFO", "LAX", "DEN", "ORD", "ATL", "BOS", "JFK", "MIA", "DFW", "PHX", "MSP", "DTW")
# Share of a day's orders arriving in each UTC hour: a morning and an evening peak.
HOURLY_DEMAND = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 7, 6, 6, 6, 6, 7, 8, 8, 7, 5, 3, 2, 1)
FAILURE_REASONS = {
    "customer_absent": 45,
    "access_denied": 15,
    "address_not_found": 8,
    "damaged": 4,
    "refused": 8,
    "weather": 8,
    "vehicle_issue": 5,
    "other": 7,
}
WAVE_HOURS = tuple(range(6, 21))  # trucks are dispatched at the top of these UTC hours
SHIFTS = {"early": (6, 14.5), "late": (13.5, 22)}  # warehouse shifts (start, end hour)
DRIVER_SHIFT = (5.5, 23)
SCENARIO_SPAN = timedelta(hours=3)

PICKS_PER_HOUR = 12.5
PACKS_PER_HOUR = 24.0
STOPS_PER_ROUTE = (6, 10)
DELIVERY_HOURS = (8, 20)  # promise windows start between these hours
FIRST_ATTEMPT_SUCCESS = 0.9
MAX_ATTEMPTS = 3
EARLY_WAIT = timedelta(minutes=20)  # a driver this early waits for the window to open

# Returns the modes as they are now: (mode, site_id or "*") -> a state with .enabled and .params.
ModesReader = Callable[[], Mapping[tuple[str, str], Any]]


@dataclass
class Config:
    """What to simulate."""

    sites: int = 3
    seed: int = 1
    history_days: float = 1.0
    orders_per_site_day: int = 900
    scenarios: list[tuple[str, str | None]] = field(default_factory=list)
    duplicates: float = 0.0
    disorder_s: float = 0.0


def site_ids(count: int, seed: int) -> list[str]:
    """Return the site ids a seed gives (deterministic, distinct)."""
    rng = random.Random(f"sites:{seed}")
    codes = rng.sample(SITE_CODES, min(count, len(SITE_CODES)))
    codes += [f"S{n:02d}" for n in range(len(codes), count)]
    return [f"{code}{n % 9 + 1}" for n, code in enumerate(codes)]


def _z(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"  # all times here are UTC


@dataclass
class Worker:
    worker_id: str
    role: str
    hourly_cost: float
    shift: str
    on_shift: bool = False
    absent: bool = False


@dataclass
class Order:
    order_id: str
    priority: str
    promised_start: datetime
    promised_end: datetime
    created: datetime
    canceled_at: datetime | None = None
    attempt: int = 1


@dataclass
class SiteModel:
    """One site's people, doors and queues."""

    site_id: str
    doors: list[str]
    workers: list[Worker]
    rng: random.Random  # demand: arrivals and the orders' own choices
    staff_rng: random.Random
    route_rng: random.Random
    jitter: random.Random  # seconds within a minute; no decisions
    pick_queue: deque[Order] = field(default_factory=deque)
    pack_queue: deque[Order] = field(default_factory=deque)
    ready: list[Order] = field(default_factory=list)
    retry: list[tuple[datetime, Order]] = field(default_factory=list)
    door_free: dict[str, datetime] = field(default_factory=dict)
    out_of_service: set[str] = field(default_factory=set)
    sick: set[str] = field(default_factory=set)
    pick_credit: float = 0.0
    pack_credit: float = 0.0
    orders_this_hour: int = 0
    deferred: int = 0
    next_order: int = 0
    next_route: int = 0

    def on_shift(self, role: str) -> list[Worker]:
        return [w for w in self.workers if w.role == role and w.on_shift]


class Simulation:
    """The network over time; ``run`` yields contract events in event-time order."""

    def __init__(self, config: Config, start: datetime, modes: ModesReader | None = None) -> None:
        self.config = config
        self.start = start.replace(second=0, microsecond=0)
        self.clock = self.start
        self._modes_reader = modes or (lambda: {})
        self.modes: Mapping[tuple[str, str], Any] = {}
        self._heap: list[tuple[datetime, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._run_tag = f"{config.seed}-{int(self.start.timestamp()) // 60:x}"
        self.sites = [self._build_site(site_id) for site_id in site_ids(config.sites, config.seed)]
        self.scenario_start: datetime | None = None
        self.emitted = 0

    # -- the network ------------------------------------------------------------------

    def _build_site(self, site_id: str) -> SiteModel:
        rng = random.Random(f"site:{self.config.seed}:{site_id}")
        scale = max(0.5, self.config.orders_per_site_day / 900)
        staff = {
            "picker": round(rng.randint(10, 14) * scale),
            "packer": round(rng.randint(6, 8) * scale),
            "loader": rng.randint(3, 5),
            "driver": round(rng.randint(16, 22) * scale),
        }
        workers = []
        for role, count in staff.items():
            for n in range(max(2, count)):
                workers.append(
                    Worker(
                        f"{site_id}-{role[:2].upper()}{n:03d}",
                        role,
                        round(rng.uniform(*(22.0, 34.0) if role == "driver" else (17.0, 29.0)), 2),
                        "early" if n % 2 == 0 else "late",
                    )
                )
        doors = [f"D{n:02d}" for n in range(1, rng.randint(6, 9) + 1)]
        seed = f"{self.config.seed}:{site_id}:{int(self.start.timestamp())}"
        return SiteModel(
            site_id,
            doors,
            workers,
            random.Random(f"orders:{seed}"),
            random.Random(f"staff:{seed}"),
            random.Random(f"routes:{seed}"),
            random.Random(f"jitter:{seed}"),
        )

    def scenario_sites(self, name: str) -> set[str]:
        """Return the sites a scenario applies to (default: the first site)."""
        return {site or self.sites[0].site_id for scenario, site in self.config.scenarios if scenario == name}

    def _scenario(self, name: str, site: SiteModel) -> bool:
        return (
            self.scenario_start is not None
            and self.clock >= self.scenario_start
            and site.site_id in self.scenario_sites(name)
        )

    def mode(self, name: str, site_id: str) -> dict[str, Any] | None:
        """Return the params of a mode enabled for the site (or the network), else None."""
        state = in_force(self.modes, name, site_id)
        return None if state is None else state.params

    # -- events ------------------------------------------------------------------------

    def _emit(self, event_type: str, when: datetime, site: str, source: str, **data: Any) -> None:
        event = {
            "specversion": "1.0",
            "id": f"sim-{self._run_tag}-{next(self._seq):x}",
            "source": source,
            "type": event_type,
            "time": _z(when),
            "data": {"site_id": site, **data},
        }
        heapq.heappush(self._heap, (when, next(self._seq), event))

    def run(self, until: datetime) -> Iterator[dict[str, Any]]:
        """Advance to ``until``, yielding every event whose time is at or before it, in time order."""
        while self.clock < until:
            if self.clock.second == 0:
                self.modes = self._modes_reader()
                for site in self.sites:
                    self._minute(site)
            yield from self._due(min(until, self.clock + timedelta(minutes=1)))
            self.clock = min(until, self.clock.replace(second=0, microsecond=0) + timedelta(minutes=1))
        yield from self._due(until)

    def _due(self, until: datetime) -> Iterator[dict[str, Any]]:
        while self._heap and self._heap[0][0] <= until:
            self.emitted += 1
            yield heapq.heappop(self._heap)[2]

    # -- one minute at one site ------------------------------------------------------------

    def _minute(self, site: SiteModel) -> None:
        now = self.clock
        self._shifts(site, now)
        if now.minute == 0:
            site.orders_this_hour = 0
        if now == self.scenario_start:
            self._start_scenarios(site, now)
        self._arrivals(site, now)
        self._warehouse(site, now)
        if now.minute == 0 and now.hour in WAVE_HOURS:
            self._wave(site, now)

    def _at(self, site: SiteModel, now: datetime, spread_s: float = 59.0) -> datetime:
        return now + timedelta(seconds=site.jitter.uniform(0, spread_s))

    def _shifts(self, site: SiteModel, now: datetime) -> None:
        hour = now.hour + now.minute / 60
        wms = f"/sites/{site.site_id}/wms"
        for worker in site.workers:
            start, end = DRIVER_SHIFT if worker.role == "driver" else SHIFTS[worker.shift]
            if hour == start:
                worker.absent = worker.worker_id in site.sick or site.staff_rng.random() < 0.04
                if worker.absent:
                    self._emit(
                        "worker.absent",
                        self._at(site, now),
                        site.site_id,
                        wms,
                        worker_id=worker.worker_id,
                        role=worker.role,
                    )
                else:
                    worker.on_shift = True
                    self._emit(
                        "worker.shift_started",
                        self._at(site, now, 600),
                        site.site_id,
                        wms,
                        worker_id=worker.worker_id,
                        role=worker.role,
                        hourly_cost=worker.hourly_cost,
                    )
            elif hour == end and worker.on_shift:
                worker.on_shift = False
                self._emit(
                    "worker.shift_ended", self._at(site, now, 600), site.site_id, wms, worker_id=worker.worker_id
                )

    def _start_scenarios(self, site: SiteModel, now: datetime) -> None:
        yard, wms = f"/sites/{site.site_id}/yard", f"/sites/{site.site_id}/wms"
        if self._scenario("dock_outage", site):
            for door in site.doors[: len(site.doors) // 2]:
                site.out_of_service.add(door)
                self._emit(
                    "dock.status_changed",
                    self._at(site, now),
                    site.site_id,
                    yard,
                    dock_id=door,
                    status="out_of_service",
                    reason="door motor fault",
                )
        if self._scenario("picker_sick_wave", site):
            pickers = [w for w in site.workers if w.role == "picker"]
            for worker in pickers[::3]:  # a third of them, on both shifts
                site.sick.add(worker.worker_id)
                if worker.on_shift:
                    worker.on_shift = False
                    self._emit("worker.shift_ended", self._at(site, now), site.site_id, wms, worker_id=worker.worker_id)
                worker.absent = True
                self._emit(
                    "worker.absent",
                    self._at(site, now),
                    site.site_id,
                    wms,
                    worker_id=worker.worker_id,
                    role=worker.role,
                )

    def _arrivals(self, site: SiteModel, now: datetime) -> None:
        rate = self.config.orders_per_site_day * HOURLY_DEMAND[now.hour] / sum(HOURLY_DEMAND) / 60
        if self._scenario("demand_spike", site):
            rate *= 2.5
        count = _poisson(site.rng, rate) + site.deferred
        site.deferred = 0
        cap = self.mode("admission_control", site.site_id)
        if cap is not None:
            room = max(0, int(cap.get("max_orders_per_hour", 200)) - site.orders_this_hour)
            site.deferred, count = max(0, count - room), min(count, room)
        for _ in range(count):
            site.orders_this_hour += 1
            self._new_order(site, self._at(site, now))

    def _promise(self, site: SiteModel, created: datetime) -> tuple[datetime, datetime]:
        # The first whole hour at least 2.5 hours out; night orders spread over the morning.
        first, last = DELIVERY_HOURS
        slot = (created + timedelta(hours=3.5)).replace(minute=0, second=0, microsecond=0)
        if slot.hour < first or slot.hour > last:
            day = slot if slot.hour < first else slot + timedelta(days=1)
            slot = day.replace(hour=first + site.rng.randrange(4))
        end = slot + timedelta(hours=2)
        conservative = self.mode("conservative_promises", site.site_id)
        if conservative is not None:
            end += timedelta(minutes=int(conservative.get("extra_minutes", 30)))
        return slot, end

    def _new_order(self, site: SiteModel, created: datetime) -> None:
        site.next_order += 1
        order_id = f"{site.site_id}-{created:%y%m%d}-O{site.next_order:05d}"
        start, end = self._promise(site, created)
        order = Order(order_id, "express" if site.rng.random() < 0.15 else "standard", start, end, created)
        oms = f"/sites/{site.site_id}/oms"
        self._emit(
            "order.created",
            created,
            site.site_id,
            oms,
            order_id=order_id,
            priority=order.priority,
            promised_start=_z(start),
            promised_end=_z(end),
        )
        roll = site.rng.random()
        if roll < 0.02:
            order.canceled_at = created + timedelta(minutes=site.rng.uniform(5, 60))
            self._emit(
                "order.canceled",
                order.canceled_at,
                site.site_id,
                oms,
                order_id=order_id,
                reason=site.rng.choice(("customer request", "payment failed", "duplicate order")),
            )
        elif roll < 0.05 and self.mode("pause_bulk_adjustments", site.site_id) is None:
            order.promised_start += timedelta(hours=2)
            order.promised_end += timedelta(hours=2)
            self._emit(
                "slot.changed",
                created + timedelta(minutes=site.rng.uniform(5, 45)),
                site.site_id,
                oms,
                order_id=order_id,
                promised_start=_z(order.promised_start),
                promised_end=_z(order.promised_end),
            )
        site.pick_queue.append(order)

    def _speed(self, site: SiteModel) -> float:
        if not self._scenario("wms_slowdown", site):
            return 1.0
        speed = 0.4
        for recovery in ("pause_reslotting", "pause_bulk_adjustments"):
            if self.mode(recovery, site.site_id) is not None:
                speed += 0.25
        return speed

    def _work(
        self, site: SiteModel, now: datetime, queue: deque[Order], role: str, per_hour: float, credit: float
    ) -> tuple[float, list[tuple[Order, Worker]]]:
        staff = site.on_shift(role)
        credit = min(credit + len(staff) * per_hour / 60 * self._speed(site), len(staff) * 3.0)
        done = []
        express_only = self.mode("priority_only", site.site_id) is not None
        skipped: list[Order] = []
        while credit >= 1 and queue and staff:
            if queue[0].created > now:
                break  # released this minute, behind every older order: it is worked from the next one
            order = queue.popleft()
            if order.canceled_at is not None and order.canceled_at <= now:
                continue
            if express_only and order.priority != "express":
                skipped.append(order)
                continue
            credit -= 1
            done.append((order, staff[len(done) % len(staff)]))
        queue.extendleft(reversed(skipped))
        return credit, done

    def _warehouse(self, site: SiteModel, now: datetime) -> None:
        wms = f"/sites/{site.site_id}/wms"
        while site.retry and site.retry[0][0] <= now:
            _, order = heapq.heappop(site.retry)  # type: ignore[misc]
            site.pack_queue.append(order)
        site.pick_credit, picked = self._work(site, now, site.pick_queue, "picker", PICKS_PER_HOUR, site.pick_credit)
        for order, worker in picked:
            self._emit(
                "order.picked",
                self._at(site, now),
                site.site_id,
                wms,
                order_id=order.order_id,
                worker_id=worker.worker_id,
            )
            site.pack_queue.append(order)
        site.pack_credit, packed = self._work(site, now, site.pack_queue, "packer", PACKS_PER_HOUR, site.pack_credit)
        for order, worker in packed:
            self._emit(
                "order.packed",
                self._at(site, now) + timedelta(seconds=60),
                site.site_id,
                wms,
                order_id=order.order_id,
                worker_id=worker.worker_id,
            )
            site.ready.append(order)

    def _wave(self, site: SiteModel, now: datetime) -> None:
        horizon = now + timedelta(minutes=40)  # trucks reach the first drops as their windows open
        due = [o for o in site.ready if o.promised_start <= horizon and (o.canceled_at is None or o.canceled_at > now)]
        if not due:
            return
        taken = {id(o) for o in due}
        site.ready = [o for o in site.ready if id(o) not in taken]
        due.sort(key=lambda o: (o.promised_start, o.order_id))
        drivers = site.on_shift("driver") or [w for w in site.workers if w.role == "driver"]
        doors = [d for d in site.doors if d not in site.out_of_service] or site.doors
        size = site.route_rng.randint(*STOPS_PER_ROUTE)
        for index in range(0, len(due), size):
            site.next_route += 1
            route_id = f"{site.site_id}-{now:%y%m%d}-R{site.next_route:04d}"
            door = min(doors, key=lambda d: (site.door_free.get(d, now), d))  # the door free soonest
            driver = drivers[site.next_route % len(drivers)]
            self._route(site, now, route_id, door, driver.worker_id, due[index : index + size])

    def _route(self, site: SiteModel, now: datetime, route_id: str, door: str, driver: str, stops: list[Order]) -> None:
        rng, yard = site.route_rng, f"/sites/{site.site_id}/yard"
        arrived = now + timedelta(minutes=rng.uniform(-5, 10))
        # Loading starts once the door is free and the wave's last orders are packed.
        ready = max(arrived, site.door_free.get(door, arrived), now + timedelta(minutes=2))
        loading = ready + timedelta(minutes=rng.uniform(1, 5))
        duration = timedelta(minutes=rng.uniform(6, 10) + len(stops) * 0.5)
        departed = loading + duration + timedelta(minutes=rng.uniform(1, 5))
        site.door_free[door] = departed + timedelta(minutes=2)
        self._emit("truck.arrived", arrived, site.site_id, yard, route_id=route_id, dock_id=door)
        self._emit("truck.loading_started", loading, site.site_id, yard, route_id=route_id, dock_id=door)
        for order in stops:
            self._emit(
                "order.loaded",
                loading + duration * rng.random(),
                site.site_id,
                yard,
                order_id=order.order_id,
                route_id=route_id,
                dock_id=door,
            )
        self._emit("truck.departed", departed, site.site_id, yard, route_id=route_id, dock_id=door, driver_id=driver)
        app = f"/drivers/{driver}/app"
        unreliable = self._scenario("eta_unreliable", site)
        cached = self.mode("eta_cache_fallback", site.site_id) is not None
        delays = self._scenario("driver_delay_wave", site)
        clock = departed
        for seq, order in enumerate(stops, 1):
            # The first leg drives out from the depot; then stop to stop.
            actual = rng.lognormvariate(math.log(1200 if seq == 1 else 360), 0.35)
            planned = actual / rng.uniform(0.97, 1.25)
            if unreliable:
                planned = actual * (rng.uniform(0.85, 1.05) if cached else rng.uniform(0.45, 0.75))
            if delays and rng.random() < 0.35:
                delay = rng.uniform(300, 1200)
                actual += delay
                self._emit(
                    "driver.delayed",
                    clock + timedelta(seconds=actual / 2),
                    site.site_id,
                    app,
                    route_id=route_id,
                    driver_id=driver,
                    delay_s=round(delay, 1),
                    reason=rng.choice(("traffic", "road closure", "vehicle check")),
                )
            arrival = clock + timedelta(seconds=actual)
            self._emit(
                "stop.arrived",
                arrival,
                site.site_id,
                app,
                route_id=route_id,
                driver_id=driver,
                stop_seq=seq,
                planned_drive_s=round(planned, 1),
            )
            attempt_at = arrival + timedelta(seconds=rng.uniform(30, 120))
            if timedelta(0) < order.promised_start - attempt_at <= EARLY_WAIT:
                attempt_at = order.promised_start + timedelta(seconds=rng.uniform(0, 60))  # wait for the window
            delivered = rng.random() < (FIRST_ATTEMPT_SUCCESS if order.attempt == 1 else 0.95)
            reason = None if delivered else rng.choices(list(FAILURE_REASONS), list(FAILURE_REASONS.values()))[0]
            self._emit(
                "delivery.attempted",
                attempt_at,
                site.site_id,
                app,
                order_id=order.order_id,
                route_id=route_id,
                driver_id=driver,
                stop_seq=seq,
                attempt=order.attempt,
                outcome="delivered" if delivered else "failed",
                failure_reason=reason,
                promised_start=_z(order.promised_start),
                promised_end=_z(order.promised_end),
            )
            clock = attempt_at + timedelta(seconds=rng.uniform(45, 150))
            self._emit("stop.departed", clock, site.site_id, app, route_id=route_id, driver_id=driver, stop_seq=seq)
            if not delivered and order.attempt < MAX_ATTEMPTS:
                order.attempt += 1
                next_day = (attempt_at + timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
                order.promised_start = next_day.replace(hour=9 + rng.randrange(3))
                order.promised_end = order.promised_start + timedelta(hours=2)
                heapq.heappush(site.retry, (next_day + timedelta(minutes=rng.uniform(0, 90)), order))  # type: ignore[misc]

    def begin_scenarios(self, at: datetime) -> None:
        """Make the configured scenarios start at ``at`` (a whole minute)."""
        self.scenario_start = at.replace(second=0, microsecond=0)


def _poisson(rng: random.Random, rate: float) -> int:
    threshold, count, product = math.exp(-rate), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def at_least_once(
    events: Iterator[dict[str, Any] | None], rng: random.Random, duplicates: float, disorder_s: float
) -> Iterator[dict[str, Any] | None]:
    """Resend a fraction of events (same key) and delay a fraction by up to ``disorder_s`` seconds."""
    if not duplicates and not disorder_s:
        yield from events
        return
    held: list[tuple[datetime, int, dict[str, Any]]] = []
    counter = itertools.count()
    for event in events:
        if event is None:  # a heartbeat: release what is due by the clock
            while held and held[0][0] <= now_utc():
                yield heapq.heappop(held)[2]
            yield None
            continue
        moment = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        while held and held[0][0] <= moment:
            yield heapq.heappop(held)[2]
        if disorder_s and rng.random() < 0.2:
            heapq.heappush(held, (moment + timedelta(seconds=rng.uniform(0, disorder_s)), next(counter), event))
        else:
            yield event
        if duplicates and rng.random() < duplicates:
            heapq.heappush(held, (moment + timedelta(seconds=rng.uniform(0, 30)), next(counter), dict(event)))
    while held:
        yield heapq.heappop(held)[2]


def history_start(end: datetime, days: float) -> datetime:
    """Return where a history run of ``days`` up to ``end`` starts: midnight, for a realistic warm-up."""
    return (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)


def now_utc() -> datetime:
    """Return the current time (UTC)."""
    return datetime.now(UTC)


# -- running a simulation into a sink ------------------------------------------------------


class Sink(Protocol):
    """Where simulated events go: a file, the stream (through the Ingestor) or a server."""

    def write(self, batch: list[dict[str, Any]]) -> None: ...


class FileSink:
    """Write events as JSON lines."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())

    def write(self, batch: list[dict[str, Any]]) -> None:
        self._file.write(b"".join(orjson.dumps(event) + b"\n" for event in batch))

    def close(self) -> None:
        self._file.close()


class IngestorSink:
    """Submit events through the Ingestor: the same validation and duplicate check as the API."""

    def __init__(self, ingestor: Ingestor, stop: threading.Event | None = None) -> None:
        self._ingestor = ingestor
        self._stop = stop or threading.Event()
        self.rejected = 0

    def write(self, batch: list[dict[str, Any]]) -> None:
        while not self._stop.is_set():
            try:
                result = self._ingestor.submit(batch)
            except Backpressure as error:
                log.info("simulator_backpressure", extra={"retry_in_s": error.retry_after_s, "backlog": error.backlog})
                self._stop.wait(error.retry_after_s)
                continue
            except StoreUnavailable as error:
                log.warning("simulator_store_unavailable", extra={"error": str(error), "retry_in_s": 2})
                self._stop.wait(2)
                continue
            self._count_rejected(result.rejected)
            return

    def _count_rejected(self, rejected: list[dict[str, Any]]) -> None:
        self.rejected += len(rejected)
        for item in rejected[:3]:
            log.error("simulator_event_rejected", extra=item)


class HttpSink(IngestorSink):
    """POST events to a running server's ingest API, retrying on 429 and 503."""

    def __init__(self, url: str, token: str, stop: threading.Event | None = None) -> None:
        self._url = url.rstrip("/") + "/api/v1/events"
        self._token = token
        self._stop = stop or threading.Event()
        self.rejected = 0

    def write(self, batch: list[dict[str, Any]]) -> None:
        body = orjson.dumps(batch)
        while not self._stop.is_set():
            request = urllib.request.Request(
                self._url,
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    self._count_rejected(orjson.loads(response.read())["rejected"])
                    return
            except urllib.error.HTTPError as error:
                if error.code in (429, 503):
                    wait = float(error.headers.get("Retry-After", "2"))
                    log.info("simulator_retry", extra={"status": error.code, "retry_in_s": wait})
                    self._stop.wait(wait)
                    continue
                raise SystemExit(f"the server refused the batch: HTTP {error.code} {error.read()[:300]!r}") from None
            except urllib.error.URLError as error:
                log.warning("simulator_server_unreachable", extra={"url": self._url, "error": str(error.reason)})
                self._stop.wait(2)


@dataclass
class Progress:
    """Counts for the progress line."""

    events: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0


def simulate(
    config: Config,
    sink: Sink,
    *,
    end: datetime | None = None,
    live: bool = False,
    modes: ModesReader | None = None,
    stop: threading.Event | None = None,
    report: Callable[[Progress, datetime], None] | None = None,
    batch_size: int = 500,
) -> Progress:
    """Generate the last ``history_days`` up to ``end`` (default now), then go on in real time if ``live``."""
    stop = stop or threading.Event()
    end = end or now_utc()
    window_start = _z(end - timedelta(days=config.history_days))
    sim = Simulation(config, history_start(end, config.history_days), modes)
    sim.begin_scenarios(end - SCENARIO_SPAN)
    progress = Progress()

    def timeline() -> Iterator[dict[str, Any] | None]:
        for event in sim.run(end):
            if event["time"] >= window_start:  # earlier events only warm the model up
                yield event
        while live and not stop.is_set():
            yield from sim.run(now_utc())
            yield None  # a heartbeat: flush what is due
            stop.wait(0.5)

    batch: list[dict[str, Any]] = []
    rng = random.Random(f"delivery:{config.seed}")
    for event in at_least_once(timeline(), rng, config.duplicates, config.disorder_s):
        if stop.is_set():
            break
        if event is not None:
            batch.append(event)
        if batch and (event is None or len(batch) >= batch_size):
            sink.write(batch)
            progress.events += len(batch)
            batch = []
            if report is not None and time.monotonic() - progress.last_report >= 1.0:
                progress.last_report = time.monotonic()
                report(progress, sim.clock)
    if batch:
        sink.write(batch)
        progress.events += len(batch)
    if report is not None:
        report(progress, sim.clock)
    return progress
