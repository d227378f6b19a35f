"""Alert rules, policies and the lifecycle plan, without any store (dashboard.alerts, PolicyFile)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.alerting import DEFAULT_POLICIES, PolicyFile
from dashboard.alerts import (
    NETWORK,
    RULES,
    Episode,
    OpenAlert,
    PolicyError,
    Snapshot,
    conditions,
    load_policies,
    picker_move,
    plan,
    validate_comment,
)

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
DEFAULTS = load_policies(DEFAULT_POLICIES.read_text())
STUCK_MINUTES = {"created": 120, "picked": 60, "packed": 180}


def site(backlog: int = 0, pickers: int = 5, docks: list[dict] | None = None, stuck: list[dict] | None = None) -> dict:
    """Return a site state shaped like SiteStateReader.state's."""
    docks = docks or []
    return {
        "backlog": backlog,
        "active_workers": {"picker": pickers} if pickers else {},
        "backlog_per_active_picker": backlog / pickers if pickers else None,
        "docks": docks,
        "trucks_waiting": sum(door.get("trucks_waiting", 0) for door in docks),
        "stuck_orders": stuck or [],
        "stuck_count": len(stuck or []),
    }


def door(dock_id: str, status: str = "open", waiting: int = 0, oldest: float | None = None) -> dict:
    return {"dock_id": dock_id, "status": status, "trucks_waiting": waiting, "oldest_wait_s": oldest}


def snapshot(sites=None, live=None, pipeline=None, now: datetime = NOW) -> Snapshot:  # type: ignore[no-untyped-def]
    return Snapshot(now, sites or {}, live or {}, pipeline, STUCK_MINUTES)


def keys(found) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {condition.key for condition in found}


def policies(text: str):  # type: ignore[no-untyped-def]
    return load_policies(text, DEFAULTS)


# -- policies -----------------------------------------------------------------------------


def test_shipped_policies_cover_every_rule():
    assert set(DEFAULTS.rules) == set(RULES)
    labor = DEFAULTS.rules["labor_imbalance"]
    assert (labor.threshold, labor.duration_s, labor.severity) == (1.5, 600, "warning")
    assert DEFAULTS.rules["dock_queue"].threshold == 1800
    assert DEFAULTS.rules["pipeline_lag"].threshold == 60
    assert all(rule.enabled for rule in DEFAULTS.rules.values())


def test_site_override_merges_over_the_rule_defaults():
    merged = policies(
        """
        [rules.dock_queue]
        threshold = 900
        [sites.SEA1.rules.dock_queue]
        severity = "critical"
        [sites.PDX2.rules.labor_imbalance]
        enabled = false
        """
    )
    assert merged.for_scope("dock_queue", "SEA1").severity == "critical"
    assert merged.for_scope("dock_queue", "SEA1").threshold == 900  # from the file's own [rules]
    assert merged.for_scope("dock_queue", "LAX1").severity == "warning"
    assert merged.for_scope("labor_imbalance", "PDX2").enabled is False
    assert merged.for_scope("labor_imbalance", "PDX2").param("min_backlog") == 20
    assert merged.rules["stuck_orders"] == DEFAULTS.rules["stuck_orders"]  # left out: the shipped default


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[rules.dock_queue]\ntreshold = 5", "rules.dock_queue.treshold: unknown key"),
        ("[rules.dock_queue]\nseverity = 'loud'", "rules.dock_queue.severity"),
        ("[rules.dock_queue]\nthreshold = -1", "rules.dock_queue.threshold"),
        ("[rules.dock_queue]\nthreshold = 'high'", "rules.dock_queue.threshold"),
        ("[rules.docks]\nthreshold = 1", "rules.docks: unknown rule"),
        ("[sites.'bad id'.rules.dock_queue]\nthreshold = 1", "sites.bad id: not a site id"),
        ("[sites.SEA1.rules.dock_queue]\nmin_backlog = 3", "sites.SEA1.rules.dock_queue.min_backlog: unknown key"),
        ("[alerts]\nx = 1", "alerts: unknown table"),
        ("[rules.dock_queue\nthreshold = 1", "not valid TOML"),
        ("[rules.dock_queue]\nenabled = 1", "rules.dock_queue.enabled"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(text, names):
    with pytest.raises(PolicyError, match=names.replace(".", r"\.")):
        policies(text)


def test_a_file_without_defaults_must_set_every_rule():
    with pytest.raises(PolicyError, match="rules.labor_imbalance: missing"):
        load_policies("[rules.dock_queue]\nthreshold = 1\nduration_s = 0\nseverity = 'info'\nhold_s = 0")


def _touch(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    stamp = 1_800_000_000 + tick  # a distinct mtime each time, however fast the test runs
    os.utime(path, (stamp, stamp))


def test_policy_file_reloads_when_it_changes_and_keeps_the_last_good_one(tmp_path, caplog):
    path = tmp_path / "policies.toml"
    _touch(path, "[rules.dock_queue]\nthreshold = 600\n", 1)
    source = PolicyFile(path)
    assert source.current().rules["dock_queue"].threshold == 600
    _touch(path, "[rules.dock_queue]\nthreshold = 1200\n", 2)
    assert source.current().rules["dock_queue"].threshold == 1200
    with caplog.at_level(logging.ERROR, logger="dashboard.alerting"):
        _touch(path, "[rules.dock_queue]\nthreshhold = 5\n", 3)
        assert source.current().rules["dock_queue"].threshold == 1200
        assert source.current().rules["dock_queue"].threshold == 1200
    refusals = [r for r in caplog.records if r.getMessage() == "alert_policies_refused"]
    assert len(refusals) == 1  # said once per version of the file
    assert "rules.dock_queue.threshhold: unknown key" in refusals[0].error
    assert "threshhold" in (source.error or "")
    _touch(path, "[rules.dock_queue]\nthreshold = 300\n", 4)
    assert source.current().rules["dock_queue"].threshold == 300
    assert source.error is None
    path.unlink()
    assert source.current().rules["dock_queue"].threshold == 300
    assert "cannot read" in (source.error or "")


def test_a_bad_file_at_start_falls_back_to_the_shipped_defaults(tmp_path):
    path = tmp_path / "policies.toml"
    _touch(path, "not toml at all [", 1)
    source = PolicyFile(path)
    assert source.current() == source.defaults
    assert "not valid TOML" in (source.error or "")


def test_the_default_file_is_the_shipped_one():
    assert PolicyFile().current() == DEFAULTS


# -- labor_imbalance ----------------------------------------------------------------------


def test_labor_imbalance_against_the_network_median():
    # Ratios: SEA1 40/4 = 10, PDX2 12/6 = 2, LAX3 15/5 = 3: median 3, 10 > 1.5 * 3.
    sites = {"SEA1": site(40, 4), "PDX2": site(12, 6), "LAX3": site(15, 5)}
    found = [c for c in conditions(snapshot(sites), DEFAULTS) if c.rule == "labor_imbalance"]
    assert keys(found) == {("labor_imbalance", "SEA1")}
    alert = found[0]
    assert "10.0 orders of backlog per active picker" in alert.message
    assert "median of 3.0" in alert.message
    # 40 / (4 + k) <= 3 needs k = 10; PDX2 (lowest ratio) keeps ceil(12 / 3) = 4 of 6: spares 2,
    # LAX3 keeps 5 of 5: spares 0. Nobody can spare 10: the one that spares most gives what it can.
    assert alert.suggestion == (
        "move 2 pickers from PDX2 to SEA1 (10 would bring it to the network median; call in 8 more)"
    )


def test_picker_move_brings_the_site_to_the_median():
    loads = {"SEA1": (60.0, 4), "PDX2": (10.0, 10), "LAX3": (30.0, 10), "DEN4": (5.0, 8)}
    move = picker_move("SEA1", loads, target=3.0)
    # 60 / (4 + 16) = 3: 16 needed. PDX2 (ratio 1) keeps ceil(10 / 3) = 4, spares 6;
    # DEN4 (ratio 0.625) keeps 2, spares 6; LAX3 keeps 10, spares 0. Neither spares 16: most is 6,
    # the tie goes to the lower backlog per picker.
    assert (move.donor, move.count, move.needed) == ("DEN4", 6, 16)
    small = picker_move("SEA1", {"SEA1": (20.0, 4), "PDX2": (10.0, 10), "DEN4": (5.0, 8)}, target=3.0)
    # 20 / (4 + 3) <= 3: 3 needed; both can spare them; DEN4 has the lowest backlog per picker.
    assert (small.donor, small.count, small.needed) == ("DEN4", 3, 3)
    assert small.describe() == "move 3 pickers from DEN4 to SEA1"
    assert 20 / (4 + small.count) <= 3.0 < 20 / (4 + small.count - 1)
    stuck = picker_move("SEA1", {"SEA1": (20.0, 2), "PDX2": (9.0, 3)}, target=3.0)
    assert (stuck.donor, stuck.count) == (None, 0)
    assert stuck.describe().startswith("call in 5 more pickers for SEA1")


def test_labor_imbalance_needs_enough_backlog_and_sites_with_pickers():
    assert not conditions(snapshot({"SEA1": site(15, 1), "PDX2": site(2, 5), "LAX3": site(3, 5)}), DEFAULTS)
    # One site with pickers (the others have none on shift): no median to compare with.
    lone = snapshot({"SEA1": site(90, 3), "PDX2": site(5, 0), "LAX3": site(7, 0)})
    assert not [c for c in conditions(lone, DEFAULTS) if c.rule == "labor_imbalance"]
    # At exactly 1.5 times the median it is not above it.
    edge = snapshot({"SEA1": site(45, 5), "PDX2": site(30, 5), "LAX3": site(30, 5)})
    assert not [c for c in conditions(edge, DEFAULTS) if c.rule == "labor_imbalance"]


def test_labor_imbalance_threshold_per_site():
    sites = {"SEA1": site(40, 4), "PDX2": site(12, 6), "LAX3": site(15, 5)}
    relaxed = policies("[sites.SEA1.rules.labor_imbalance]\nthreshold = 4.0\n")
    assert not [c for c in conditions(snapshot(sites), relaxed) if c.rule == "labor_imbalance"]


# -- dock_queue ---------------------------------------------------------------------------


def test_dock_queue_on_a_long_wait_or_a_broken_door_with_a_queue():
    sites = {
        "SEA1": site(docks=[door("D1", waiting=1, oldest=1900.0), door("D2")]),
        "PDX2": site(docks=[door("D1", "out_of_service"), door("D2", waiting=2, oldest=300.0)]),
        "LAX3": site(docks=[door("D1", "out_of_service"), door("D2")]),  # broken, but nobody waits
        "DEN4": site(docks=[door("D1", waiting=3, oldest=1700.0)]),
    }
    found = {c.site_id: c for c in conditions(snapshot(sites), DEFAULTS) if c.rule == "dock_queue"}
    assert set(found) == {"SEA1", "PDX2"}
    assert "waited 32 min at door D1" in found["SEA1"].message
    assert "door D1 out of service while 2 trucks wait" in found["PDX2"].message
    assert found["PDX2"].suggestion == "bring D1 back into service or spread the waiting trucks over D2"


# -- stuck_orders -------------------------------------------------------------------------


def test_stuck_orders_counts_orders_past_their_stage_time_per_stage():
    def stuck(stage: str, minutes: float) -> dict:
        return {"order_id": f"{stage}-{minutes}", "stage": stage, "stuck_for_s": minutes * 60}

    crowded = [stuck("picked", 61 + n) for n in range(51)] + [stuck("created", 130) for _ in range(3)]
    late_only = [stuck("packed", 30) for _ in range(80)]  # stuck_orders lists them for a passed promise
    spread = [stuck("picked", 90) for _ in range(30)] + [stuck("created", 130) for _ in range(30)]
    sites = {"SEA1": site(stuck=crowded), "PDX2": site(stuck=late_only), "LAX3": site(stuck=spread)}
    found = [c for c in conditions(snapshot(sites), DEFAULTS) if c.rule == "stuck_orders"]
    assert keys(found) == {("stuck_orders", "SEA1")}
    assert "51 at picked over 60 min" in found[0].message
    strict = policies("[sites.LAX3.rules.stuck_orders]\nthreshold = 25\n")
    assert ("stuck_orders", "LAX3") in keys(conditions(snapshot(sites), strict))


# -- on_time_drop, first_attempt_drop -----------------------------------------------------


def test_rate_drops_below_target_with_enough_volume():
    live = {
        "SEA1": {"deliveries": 40, "attempts": 45, "on_time_rate": 0.8, "first_attempt_rate": 0.95},
        "PDX2": {"deliveries": 40, "attempts": 50, "on_time_rate": 0.97, "first_attempt_rate": 0.7},
        "LAX3": {"deliveries": 5, "attempts": 6, "on_time_rate": 0.2, "first_attempt_rate": 0.1},  # too few
        "DEN4": {"deliveries": 0, "attempts": 0, "on_time_rate": None, "first_attempt_rate": None},
    }
    found = {c.key: c for c in conditions(snapshot(live=live), DEFAULTS)}
    assert set(found) == {("on_time_drop", "SEA1"), ("first_attempt_drop", "PDX2")}
    assert (
        "on-time rate over the last hour is 80.0% (target 85.0%, 40 deliveries)"
        in found[("on_time_drop", "SEA1")].message
    )
    assert found[("on_time_drop", "SEA1")].severity == "critical"


# -- pipeline_lag -------------------------------------------------------------------------


def test_pipeline_lag_on_an_old_event_or_any_dead_letter():
    healthy = {"oldest_unprocessed_age_s": 5.0, "backlog": 10, "dead_letters_waiting": 0}
    assert not conditions(snapshot(pipeline=healthy), DEFAULTS)
    assert not conditions(snapshot(pipeline={**healthy, "oldest_unprocessed_age_s": None}), DEFAULTS)
    lagging = conditions(snapshot(pipeline={**healthy, "oldest_unprocessed_age_s": 75.0}), DEFAULTS)
    assert keys(lagging) == {("pipeline_lag", NETWORK)}
    assert "75 s old" in lagging[0].message
    dead = conditions(snapshot(pipeline={**healthy, "dead_letters_waiting": 1}), DEFAULTS)
    assert keys(dead) == {("pipeline_lag", NETWORK)}
    assert "1 event in the dead-letter stream" in dead[0].message


# -- the lifecycle ------------------------------------------------------------------------

LAGGING = {"oldest_unprocessed_age_s": 300.0, "backlog": 10, "dead_letters_waiting": 0}
CALM = {"oldest_unprocessed_age_s": 1.0, "backlog": 0, "dead_letters_waiting": 0}
KEY = ("dock_queue", "SEA1")
QUEUE = {"SEA1": site(docks=[door("D1", waiting=1, oldest=2000.0)])}
CLEAR = {"SEA1": site(docks=[door("D1")])}


def test_a_condition_opens_only_once_it_has_held_for_its_duration():
    first = plan(snapshot(QUEUE), DEFAULTS, {}, {})  # dock_queue: 60 s
    assert first.open == [] and first.episodes[KEY] == Episode(NOW)
    later = plan(snapshot(QUEUE, now=NOW + timedelta(seconds=59)), DEFAULTS, first.episodes, {})
    assert later.open == []
    due = plan(snapshot(QUEUE, now=NOW + timedelta(seconds=60)), DEFAULTS, later.episodes, {})
    assert [c.key for c in due.open] == [KEY]
    assert due.episodes[KEY] == Episode(NOW, alerted=True)


def test_a_break_restarts_the_duration():
    first = plan(snapshot(QUEUE), DEFAULTS, {}, {})
    gap = plan(snapshot(CLEAR, now=NOW + timedelta(seconds=30)), DEFAULTS, first.episodes, {})
    assert gap.episodes == {}
    again = plan(snapshot(QUEUE, now=NOW + timedelta(seconds=40)), DEFAULTS, gap.episodes, {})
    assert again.open == [] and again.episodes[KEY].since == NOW + timedelta(seconds=40)


def test_an_open_alert_is_not_repeated_while_the_condition_holds():
    episodes = {KEY: Episode(NOW - timedelta(hours=1), alerted=True)}
    result = plan(snapshot(QUEUE), DEFAULTS, episodes, {KEY: OpenAlert(7, NOW - timedelta(seconds=10))})
    assert result.open == [] and result.resolve == []
    assert [(alert_id, c.key) for alert_id, c in result.still_true] == [(7, KEY)]


def test_resolved_by_hand_does_not_reopen_until_the_condition_clears():
    episodes = {KEY: Episode(NOW - timedelta(hours=1), alerted=True)}
    held = plan(snapshot(QUEUE), DEFAULTS, episodes, {})  # the alert was resolved by hand
    assert held.open == [] and held.episodes[KEY].alerted
    cleared = plan(snapshot(CLEAR, now=NOW + timedelta(minutes=1)), DEFAULTS, held.episodes, {})
    back = plan(snapshot(QUEUE, now=NOW + timedelta(minutes=2)), DEFAULTS, cleared.episodes, {})
    due = plan(snapshot(QUEUE, now=NOW + timedelta(minutes=3)), DEFAULTS, back.episodes, {})
    assert [c.key for c in due.open] == [KEY]


def test_auto_resolve_after_the_hold_time():
    # dock_queue holds 300 s: the alert stays while the condition has been clear for less.
    open_alerts = {KEY: OpenAlert(7, NOW)}
    early = plan(snapshot(CLEAR, now=NOW + timedelta(seconds=299)), DEFAULTS, {}, open_alerts)
    assert early.resolve == []
    due = plan(snapshot(CLEAR, now=NOW + timedelta(seconds=300)), DEFAULTS, {}, open_alerts)
    assert due.resolve == [7]


def test_back_within_the_hold_time_keeps_the_same_alert():
    open_alerts = {KEY: OpenAlert(7, NOW)}
    back = plan(snapshot(QUEUE, now=NOW + timedelta(seconds=200)), DEFAULTS, {}, open_alerts)
    assert back.open == [] and back.resolve == [] and back.still_true[0][0] == 7
    assert back.episodes[KEY] == Episode(NOW + timedelta(seconds=200), alerted=True)


def test_network_scope_and_zero_duration():
    result = plan(snapshot(pipeline=LAGGING), DEFAULTS, {}, {})  # pipeline_lag: duration 0
    assert [c.key for c in result.open] == [("pipeline_lag", NETWORK)]
    clear = plan(
        snapshot(pipeline=CALM, now=NOW + timedelta(seconds=120)),
        DEFAULTS,
        result.episodes,
        {("pipeline_lag", NETWORK): OpenAlert(1, NOW)},
    )
    assert clear.resolve == [1]


def test_a_disabled_rule_never_fires_and_its_open_alert_resolves():
    off = policies("[rules.dock_queue]\nenabled = false\n")
    result = plan(snapshot(QUEUE, now=NOW + timedelta(seconds=300)), off, {}, {KEY: OpenAlert(3, NOW)})
    assert result.true_now == [] and result.resolve == [3]


# -- ack and resolve bodies ---------------------------------------------------------------


def test_comment_validation():
    assert validate_comment({"comment": "  moving two pickers  "}, True) == "moving two pickers"
    assert validate_comment(None, False) is None
    assert validate_comment({}, False) is None
    for body, message in [
        (None, "body"),
        ({}, "comment: is required"),
        ({"comment": ""}, "comment: must not be empty"),
        ({"comment": "   "}, "comment: must not be empty"),
        ({"comment": 5}, "comment: must be a string"),
        ({"comment": "x" * 1001}, "comment: must be at most 1000"),
        ({"comment": "a\x00b"}, "comment: must not contain the NUL"),
        ({"comment": "ok", "by": "me"}, "by: unknown field"),
        (["comment"], "body: must be a JSON object"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_comment(body, True)


def test_a_site_already_at_the_target_needs_no_move():
    move = picker_move("SEA1", {"SEA1": (3.0, 4), "PDX2": (0.0, 5)}, target=1.0)
    assert (move.count, move.needed) == (0, 0)
    assert move.describe().startswith("no picker needs to move")


def test_a_zero_median_aims_at_one_order_per_picker():
    sites = {"SEA1": site(30, 5), "PDX2": site(0, 6), "LAX3": site(0, 4)}
    (found,) = [c for c in conditions(snapshot(sites), DEFAULTS) if c.rule == "labor_imbalance"]
    # 30 / (5 + 25) = 1: 25 needed; PDX2 and LAX3 keep one each: spare 5 and 3.
    assert found.suggestion == (
        "move 5 pickers from PDX2 to SEA1 (25 would bring it to the network median; call in 20 more)"
    )
    assert "far above the network median of 0.0" in found.message
