"""Alert rules and policies: which conditions hold now, and what the alert lifecycle should do (no I/O).

The evaluator (``dashboard.alerting``) gathers a ``Snapshot`` (the state of
every site, the last hour's live metrics per site, the pipeline's status),
reads the condition episodes and the alerts not yet resolved, and calls
``plan``. The answer says which alerts to open, which open ones are still
true (their ``last_true_at`` moves), and which to resolve because their
condition has been clear for the rule's hold time.

A *condition* is a (rule, scope) whose test is true at an instant; the scope
is a site id, or ``*`` for the whole network. A condition *fires* once it
has been true without a break for the rule's ``duration_s``. One episode of
truth opens at most one alert: an alert resolved by hand while its condition
still holds does not come back until the condition has cleared.
"""

from __future__ import annotations

import math
import re
import statistics
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

NETWORK = "*"
SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "acknowledged", "resolved")
COMMON_KEYS = ("enabled", "threshold", "duration_s", "severity", "hold_s")
# Each rule's own keys besides the common ones (all numbers >= 0).
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "labor_imbalance": ("min_backlog", "min_sites"),
    "dock_queue": (),
    "stuck_orders": (),
    "on_time_drop": ("min_deliveries",),
    "first_attempt_drop": ("min_attempts",),
    "pipeline_lag": ("max_dead_letters",),
}
RULES = tuple(RULE_KEYS)
_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_EPSILON = 1e-9

Key = tuple[str, str]  # (rule, site_id or "*")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the key at fault."""


# -- policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulePolicy:
    """One rule's settings for one scope: when it is true, how long it must hold, how bad it is."""

    rule: str
    enabled: bool
    threshold: float
    duration_s: float
    severity: str
    hold_s: float
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, name: str) -> float:
        """Return a rule-specific setting."""
        return self.params[name]


@dataclass(frozen=True, slots=True)
class Policies:
    """Every rule's defaults, and the per-site overrides merged over them."""

    rules: Mapping[str, RulePolicy]
    sites: Mapping[str, Mapping[str, RulePolicy]] = field(default_factory=dict)

    def for_scope(self, rule: str, site_id: str) -> RulePolicy:
        """Return the policy of ``rule`` in force at ``site_id`` (its override, else the default)."""
        return self.sites.get(site_id, {}).get(rule) or self.rules[rule]


def _number(path: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
        raise PolicyError(f"{path}: must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _rule_policy(rule: str, path: str, table: Any, base: RulePolicy | None) -> RulePolicy:
    if not isinstance(table, dict):
        raise PolicyError(f"{path}: must be a table, got {table!r}")
    allowed = COMMON_KEYS + RULE_KEYS[rule]
    for key in table:
        if key not in allowed:
            raise PolicyError(f"{path}.{key}: unknown key; {rule} takes {', '.join(allowed)}")
    if base is None:
        missing = [key for key in allowed if key not in table and key != "enabled"]
        if missing:
            raise PolicyError(f"{path}: missing {', '.join(missing)}")
    enabled = table.get("enabled", True if base is None else base.enabled)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{path}.enabled: must be true or false, got {enabled!r}")
    severity = table.get("severity", None if base is None else base.severity)
    if severity not in SEVERITIES:
        raise PolicyError(f"{path}.severity: must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    numbers = {}
    for key in ("threshold", "duration_s", "hold_s", *RULE_KEYS[rule]):
        if key in table:
            numbers[key] = _number(f"{path}.{key}", table[key])
        else:
            assert base is not None
            numbers[key] = base.params[key] if key in base.params else getattr(base, key)
    return RulePolicy(
        rule=rule,
        enabled=enabled,
        threshold=numbers.pop("threshold"),
        duration_s=numbers.pop("duration_s"),
        severity=severity,
        hold_s=numbers.pop("hold_s"),
        params=numbers,
    )


def parse_policies(document: Mapping[str, Any], defaults: Policies | None = None) -> Policies:
    """Return the policies a parsed TOML document sets; raise PolicyError naming the key at fault.

    Rules the document leaves out keep ``defaults`` (the shipped file's); a
    document with no ``defaults`` must set every rule in full.
    """
    for key in document:
        if key not in ("rules", "sites"):
            raise PolicyError(f"{key}: unknown table; a policy file has [rules.<rule>] and [sites.<SITE>.rules.<rule>]")
    rules_table = document.get("rules", {})
    if not isinstance(rules_table, dict):
        raise PolicyError("rules: must be a table")
    rules: dict[str, RulePolicy] = {}
    for name, table in rules_table.items():
        if name not in RULE_KEYS:
            raise PolicyError(f"rules.{name}: unknown rule; choose from {', '.join(RULES)}")
        base = None if defaults is None else defaults.rules[name]
        rules[name] = _rule_policy(name, f"rules.{name}", table, base)
    for name in RULES:
        if name not in rules:
            if defaults is None:
                raise PolicyError(f"rules.{name}: missing")
            rules[name] = defaults.rules[name]
    sites_table = document.get("sites", {})
    if not isinstance(sites_table, dict):
        raise PolicyError("sites: must be a table")
    sites: dict[str, dict[str, RulePolicy]] = {}
    for site_id, site_table in sites_table.items():
        path = f"sites.{site_id}"
        if not (site_id == NETWORK or _SITE_ID.fullmatch(site_id)):
            raise PolicyError(f"{path}: not a site id (^[A-Za-z0-9_-]{{1,32}}$)")
        if not isinstance(site_table, dict) or set(site_table) - {"rules"}:
            raise PolicyError(f"{path}: must hold only a rules table ([{path}.rules.<rule>])")
        overrides = site_table.get("rules", {})
        if not isinstance(overrides, dict):
            raise PolicyError(f"{path}.rules: must be a table")
        for name, table in overrides.items():
            if name not in RULE_KEYS:
                raise PolicyError(f"{path}.rules.{name}: unknown rule; choose from {', '.join(RULES)}")
            sites.setdefault(site_id, {})[name] = _rule_policy(name, f"{path}.rules.{name}", table, rules[name])
    return Policies(rules, sites)


def load_policies(text: str, defaults: Policies | None = None) -> Policies:
    """Parse a policy file's text; raise PolicyError saying what is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"not valid TOML: {error}") from None
    return parse_policies(document, defaults)


# -- the snapshot and the conditions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the rules look at, all as of ``now``.

    ``sites``: site id -> the dict ``SiteStateReader.state`` returns;
    ``live``: site id -> the last hour's metrics (``LiveSource.metrics``);
    ``pipeline``: the pipeline status as a dict (``PipelineStatus.as_dict()``)
    plus ``dead_letters_waiting`` (entries in the dead-letter stream now), or
    None when it could not be read; ``stuck_minutes``: stage -> minutes an
    order may sit there (the ``STUCK_MINUTES`` setting the state used).
    """

    now: datetime
    sites: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    live: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pipeline: Mapping[str, Any] | None = None
    stuck_minutes: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule that is true for a scope right now, with what to tell the operator."""

    rule: str
    site_id: str
    severity: str
    message: str
    suggestion: str | None = None

    @property
    def key(self) -> Key:
        return (self.rule, self.site_id)


Check = Callable[[Snapshot, Policies], list[Condition]]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def _ceil(value: float) -> int:
    # Guard against 13.000000000002 becoming 14.
    return math.ceil(value - _EPSILON)


@dataclass(frozen=True, slots=True)
class PickerMove:
    """Moving ``count`` pickers from ``donor`` to ``site_id``; ``needed`` would bring it to the target."""

    site_id: str
    donor: str | None
    count: int
    needed: int

    def describe(self) -> str:
        """Return the suggestion in words."""
        if self.needed == 0:
            return f"no picker needs to move: {self.site_id} is at the target backlog per picker already"
        if self.donor is None or self.count == 0:
            return (
                f"call in {self.needed} more picker{'s' if self.needed != 1 else ''} for {self.site_id}: "
                "no site can spare any without going above the network median"
            )
        text = f"move {self.count} picker{'s' if self.count != 1 else ''} from {self.donor} to {self.site_id}"
        if self.count < self.needed:
            text += f" ({self.needed} would bring it to the network median; call in {self.needed - self.count} more)"
        return text


def picker_move(site_id: str, loads: Mapping[str, tuple[float, int]], target: float) -> PickerMove:
    """Return how many pickers to move to ``site_id``, and from where, to bring it to ``target`` orders per picker.

    ``loads`` is site -> (backlog, active pickers) for every site with pickers
    on shift. The site needs the fewest extra pickers k with
    backlog / (pickers + k) <= target. A donor keeps at least one picker and
    stays at or below the target; the one with the lowest backlog per picker
    that can spare all k gives them, else the one that can spare the most.
    """
    backlog, pickers = loads[site_id]
    needed = max(0, _ceil(backlog / target) - pickers)
    spare: list[tuple[int, float, str]] = []
    for donor, (donor_backlog, donor_pickers) in loads.items():
        if donor == site_id or donor_pickers <= 1:
            continue
        keep = max(1, _ceil(donor_backlog / target))
        can = donor_pickers - keep
        if can > 0:
            spare.append((can, donor_backlog / donor_pickers, donor))
    whole = sorted((ratio, donor) for can, ratio, donor in spare if can >= needed)
    if whole:
        return PickerMove(site_id, whole[0][1], needed, needed)
    if not spare:
        return PickerMove(site_id, None, 0, needed)
    can, _ratio, donor = max(spare, key=lambda item: (item[0], -item[1]))
    return PickerMove(site_id, donor, min(can, needed), needed)


def _labor_imbalance(snapshot: Snapshot, policies: Policies) -> list[Condition]:
    loads: dict[str, tuple[float, int]] = {}
    for site_id, state in snapshot.sites.items():
        pickers = int((state.get("active_workers") or {}).get("picker", 0))
        if pickers > 0:
            loads[site_id] = (float(state.get("backlog") or 0), pickers)
    network = policies.rules["labor_imbalance"]
    if len(loads) < max(2, int(network.param("min_sites"))):
        return []
    ratios = {site_id: backlog / pickers for site_id, (backlog, pickers) in loads.items()}
    median = statistics.median(ratios.values())
    # With half the network idle the median is 0; aim for one order per picker then.
    target = median if median > 0 else 1.0
    found = []
    for site_id, ratio in sorted(ratios.items()):
        policy = policies.for_scope("labor_imbalance", site_id)
        backlog, pickers = loads[site_id]
        if not policy.enabled or backlog < policy.param("min_backlog") or ratio <= policy.threshold * median:
            continue
        move = picker_move(site_id, loads, target)
        times = f"{ratio / median:.1f} times" if median > 0 else "far above"
        found.append(
            Condition(
                "labor_imbalance",
                site_id,
                policy.severity,
                f"{site_id}: {ratio:.1f} orders of backlog per active picker "
                f"({backlog:.0f} orders, {pickers} pickers), "
                f"{times} the network median of {median:.1f} (alert above {policy.threshold:g} times)",
                move.describe(),
            )
        )
    return found


def _dock_queue(snapshot: Snapshot, policies: Policies) -> list[Condition]:
    found = []
    for site_id, state in sorted(snapshot.sites.items()):
        policy = policies.for_scope("dock_queue", site_id)
        if not policy.enabled:
            continue
        doors = state.get("docks") or []
        waiting = int(state.get("trucks_waiting") or 0)
        oldest = max((door.get("oldest_wait_s") or 0.0 for door in doors), default=0.0)
        broken = [door["dock_id"] for door in doors if door.get("status") == "out_of_service"]
        reasons, advice = [], []
        if oldest > policy.threshold:
            door = max(doors, key=lambda d: d.get("oldest_wait_s") or 0.0)
            reasons.append(
                f"a truck has waited {_minutes(oldest)} at door {door['dock_id']} "
                f"(alert above {_minutes(policy.threshold)})"
            )
            advice.append(f"start loading at {door['dock_id']} or send the truck to a free door")
        if broken and waiting:
            reasons.append(
                f"door{'s' if len(broken) > 1 else ''} {', '.join(broken)} out of service while "
                f"{waiting} truck{'s' if waiting != 1 else ''} wait{'s' if waiting == 1 else ''}"
            )
            open_doors = [door["dock_id"] for door in doors if door.get("status") != "out_of_service"]
            advice.append(
                f"bring {', '.join(broken)} back into service"
                + (f" or spread the waiting trucks over {', '.join(open_doors)}" if open_doors else "")
            )
        if reasons:
            found.append(
                Condition("dock_queue", site_id, policy.severity, f"{site_id}: {'; '.join(reasons)}", "; ".join(advice))
            )
    return found


def stuck_by_stage(state: Mapping[str, Any], stuck_minutes: Mapping[str, float]) -> dict[str, int]:
    """Count a site's orders stuck at a stage past that stage's time (orders only late on their promise don't count)."""
    counts: dict[str, int] = {}
    for order in state.get("stuck_orders") or []:
        stage = order.get("stage")
        limit = stuck_minutes.get(stage) if stage else None
        if limit is not None and (order.get("stuck_for_s") or 0.0) > limit * 60:
            counts[stage] = counts.get(stage, 0) + 1
    return counts


def _stuck_orders(snapshot: Snapshot, policies: Policies) -> list[Condition]:
    found = []
    for site_id, state in sorted(snapshot.sites.items()):
        policy = policies.for_scope("stuck_orders", site_id)
        if not policy.enabled:
            continue
        counts = stuck_by_stage(state, snapshot.stuck_minutes)
        over = sorted(((n, stage) for stage, n in counts.items() if n > policy.threshold), reverse=True)
        if not over:
            continue
        listed = ", ".join(f"{n} at {stage} over {snapshot.stuck_minutes[stage]:g} min" for n, stage in over)
        found.append(
            Condition(
                "stuck_orders",
                site_id,
                policy.severity,
                f"{site_id}: orders stuck at a stage past its time: {listed} (alert above {policy.threshold:g})",
                f"look at the orders stuck at {over[0][1]} first (site page, stuck orders)",
            )
        )
    return found


def _rate_drop(rule: str, rate_name: str, volume_name: str, volume_key: str, label: str) -> Check:
    def check(snapshot: Snapshot, policies: Policies) -> list[Condition]:
        found = []
        for site_id, figures in sorted(snapshot.live.items()):
            policy = policies.for_scope(rule, site_id)
            rate = figures.get(rate_name)
            volume = int(figures.get(volume_name) or 0)
            if not policy.enabled or rate is None or volume < policy.param(volume_key) or rate >= policy.threshold:
                continue
            found.append(
                Condition(
                    rule,
                    site_id,
                    policy.severity,
                    f"{site_id}: {label} rate over the last hour is {rate:.1%} "
                    f"(target {policy.threshold:.1%}, {volume} {volume_name})",
                    None,
                )
            )
        return found

    return check


def _pipeline_lag(snapshot: Snapshot, policies: Policies) -> list[Condition]:
    policy = policies.for_scope("pipeline_lag", NETWORK)
    status = snapshot.pipeline
    if not policy.enabled or status is None:
        return []
    reasons, advice = [], []
    age = status.get("oldest_unprocessed_age_s")
    if age is not None and age > policy.threshold:
        reasons.append(
            f"the oldest unprocessed event is {age:.0f} s old (alert above {policy.threshold:g} s), "
            f"backlog {status.get('backlog', 0)}"
        )
        advice.append("check the ingest workers (GET /api/v1/pipeline: consumers, processed_per_s); add workers")
    dead = int(status.get("dead_letters_waiting") or 0)
    if dead > policy.param("max_dead_letters"):
        reasons.append(f"{dead} event{'s' if dead != 1 else ''} in the dead-letter stream")
        advice.append("read them (XRANGE <prefix>:dead - +), fix and re-post, then XDEL them")
    if not reasons:
        return []
    return [Condition("pipeline_lag", NETWORK, policy.severity, "pipeline: " + "; ".join(reasons), "; ".join(advice))]


CHECKS: dict[str, Check] = {
    "labor_imbalance": _labor_imbalance,
    "dock_queue": _dock_queue,
    "stuck_orders": _stuck_orders,
    "on_time_drop": _rate_drop("on_time_drop", "on_time_rate", "deliveries", "min_deliveries", "on-time"),
    "first_attempt_drop": _rate_drop(
        "first_attempt_drop", "first_attempt_rate", "attempts", "min_attempts", "first-attempt"
    ),
    "pipeline_lag": _pipeline_lag,
}


def conditions(snapshot: Snapshot, policies: Policies) -> list[Condition]:
    """Return every (rule, scope) whose test is true in the snapshot, whatever its duration."""
    return [condition for rule in RULES for condition in CHECKS[rule](snapshot, policies)]


# -- the lifecycle ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Episode:
    """A condition true without a break since ``since``; ``alerted`` once it has opened (or kept) an alert."""

    since: datetime
    alerted: bool = False


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert not yet resolved: its id and the last time its condition was true."""

    id: int
    last_true_at: datetime


@dataclass
class Plan:
    """What one evaluation changes.

    ``episodes`` replaces the stored condition episodes; ``open`` holds the
    conditions that get a new alert; ``still_true`` the open alerts whose
    condition holds now (last_true_at, message and suggestion move);
    ``resolve`` the alerts whose condition has been clear for the hold time.
    """

    now: datetime
    true_now: list[Condition] = field(default_factory=list)
    episodes: dict[Key, Episode] = field(default_factory=dict)
    open: list[Condition] = field(default_factory=list)
    still_true: list[tuple[int, Condition]] = field(default_factory=list)
    resolve: list[int] = field(default_factory=list)


def plan(
    snapshot: Snapshot,
    policies: Policies,
    episodes: Mapping[Key, Episode],
    open_alerts: Mapping[Key, OpenAlert],
) -> Plan:
    """Decide the alert lifecycle for one evaluation at ``snapshot.now``."""
    now = snapshot.now
    result = Plan(now, conditions(snapshot, policies))
    for condition in result.true_now:
        key = condition.key
        policy = policies.for_scope(*key)
        episode = episodes.get(key) or Episode(now)
        alert = open_alerts.get(key)
        if alert is not None:
            result.still_true.append((alert.id, condition))
            episode = replace(episode, alerted=True)
        elif not episode.alerted and now - episode.since >= timedelta(seconds=policy.duration_s):
            result.open.append(condition)
            episode = replace(episode, alerted=True)
        result.episodes[key] = episode
    for key, alert in sorted(open_alerts.items()):
        if key in result.episodes:
            continue
        hold = timedelta(seconds=policies.for_scope(*key).hold_s if key[0] in RULE_KEYS else 0)
        if now - alert.last_true_at >= hold:
            result.resolve.append(alert.id)
    return result


MAX_COMMENT_CHARS = 1000


def validate_comment(body: Any, required: bool) -> str | None:
    """Return the comment of an ack or resolve body; raise ValueError naming the field.

    ``body`` is the parsed JSON (None for an empty body, allowed when the comment is optional).
    """
    if body is None and not required:
        return None
    if not isinstance(body, dict):
        raise ValueError(f"body: must be a JSON object with a comment, got {type(body).__name__}")
    for name in body:
        if name != "comment":
            raise ValueError(f"{name}: unknown field; the body takes only comment")
    if "comment" not in body:
        if required:
            raise ValueError("comment: is required; say what is being done about the alert")
        return None
    comment = body["comment"]
    if not isinstance(comment, str):
        raise ValueError(f"comment: must be a string, got {type(comment).__name__}")
    comment = comment.strip()
    if not comment:
        raise ValueError("comment: must not be empty")
    if "\x00" in comment:  # PostgreSQL text cannot hold it
        raise ValueError("comment: must not contain the NUL character")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"comment: must be at most {MAX_COMMENT_CHARS} characters, got {len(comment)}")
    return comment
