"""The site page's refresh: each store's answer, or what it last gave under a banner saying so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dash import Patch, no_update

from callbacks.site import SiteMemory, read_site, trends_output
from dashboard.stream import StoreUnavailable
from dashboard.wallboard import LastGood, history_unavailable

T0 = datetime(2026, 12, 3, 8, 0, 5, tzinfo=UTC)
STATE = {"site_id": "SEA1", "doors": [{"dock_id": "D1", "status": "open"}]}
TRENDS = [{"t": "2026-12-03T07:00:00Z", "on_time_rate": 0.9}]


def down(store: str):  # type: ignore[no-untyped-def]
    def read() -> None:
        raise StoreUnavailable(f"{store}: connection refused")

    return read


def history_line() -> str:
    return history_unavailable("PostgreSQL", T0)


def test_both_stores_up_gives_fresh_figures_and_no_banner() -> None:
    memory = LastGood()
    reading = read_site(lambda: STATE, lambda: TRENDS, memory, "SEA1", T0, history_line)
    assert (reading.state, reading.trends, reading.banner) == (STATE, TRENDS, [])
    assert reading.state_fresh and reading.trends_fresh
    assert (memory.state_at, memory.live_at) == (T0, T0)


def test_redis_down_keeps_the_last_trends_and_says_since_when() -> None:
    memory = LastGood()
    read_site(lambda: STATE, lambda: TRENDS, memory, "SEA1", T0, history_line)
    later = T0 + timedelta(seconds=30)
    reading = read_site(lambda: STATE, down("Redis"), memory, "SEA1", later, history_line)
    assert reading.trends == TRENDS and not reading.trends_fresh
    assert reading.state == STATE and reading.state_fresh
    assert reading.banner == ["Redis unreachable: live figures stale since 08:00:05 UTC (last known figures shown)"]


def test_database_down_keeps_the_last_state_and_says_history_is_unavailable() -> None:
    memory = LastGood()
    read_site(lambda: STATE, lambda: TRENDS, memory, "SEA1", T0, history_line)
    reading = read_site(down("database"), lambda: TRENDS, memory, "SEA1", T0, history_line)
    assert reading.state == STATE and not reading.state_fresh and reading.state_known
    assert reading.banner == [
        "History is unavailable (PostgreSQL unreachable since 08:00:05 UTC); live figures continue"
    ]


def test_both_down_does_not_claim_live_figures_continue() -> None:
    reading = read_site(down("database"), down("Redis"), LastGood(), "SEA1", T0, history_line)
    assert reading.state is None and not reading.state_known and reading.trends is None
    assert reading.banner == [
        "Redis unreachable: no live figures yet (Redis: connection refused)",
        "History is unavailable (PostgreSQL unreachable since 08:00:05 UTC)",
    ]


def test_site_memory_is_per_site_and_forgets_the_least_recently_used() -> None:
    memory = SiteMemory(size=2)
    sea, pdx = memory.of("SEA1"), memory.of("PDX2")
    assert memory.of("SEA1") is sea and pdx is not sea  # SEA1 is now the most recently used
    memory.of("LAX3")  # one too many: PDX2 goes
    assert memory.of("SEA1") is sea
    assert memory.of("PDX2") is not pdx


def test_trends_are_drawn_whole_at_first_then_patched_and_kept_while_stale() -> None:
    first = trends_output(TRENDS, fresh=True, first=True)
    assert isinstance(first, dict) and first["data"]
    assert isinstance(trends_output(TRENDS, fresh=True, first=False), Patch)
    assert trends_output(TRENDS, fresh=False, first=False) is no_update
    assert trends_output(None, fresh=True, first=False) is no_update
