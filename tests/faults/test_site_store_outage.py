"""The site page in a browser while its stores die: a banner naming the store, last-known figures, no 500, recovery.

The site page reads two stores each refresh (``SITE_REFRESH_S``): its state
(doors, labor, stuck orders, alerts) from PostgreSQL and its 24-hour trends
from Redis. Each test builds the app on a store of its own, stops that store
under the page, and checks that within two refresh intervals the banner says
which store is down and since when, while what that store last gave stays on
screen and the other store's parts keep updating; that no request was
answered 500; and that the banner goes within one refresh interval (plus
``RECOVERY_ALLOWANCE_S``) of the store answering again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callbacks.site import SITE_REFRESH_S
from dashboard.aggregates import truncate
from dashboard.runtime import Runtime
from tests.browser.conftest import drain
from tests.faults.outage import (
    POLL_S,
    RECOVERY_ALLOWANCE_S,
    StatusRecorder,
)
from tests.faults.support import wait_until
from tests.helpers import make_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PAGE = "/sites/SEA1"
# The figure of the trends chart, as the browser holds it: one trace per metric.
TRENDS_JS = """
const graph = document.querySelector('#site-trends .js-plotly-plot');
if (!graph || !graph.data) { return null; }
return graph.data.map(trace => [trace.name, Array.from(trace.x || []), Array.from(trace.y || [])]);
"""


def started_site_page(dash_duo, runtime: Runtime) -> StatusRecorder:  # type: ignore[no-untyped-def]
    """Serve the app (recording every status) and open SEA1's page once its doors and trends are drawn."""
    from dashboard.webapp import create_app

    app = create_app(runtime=runtime)
    recorder = StatusRecorder(app.server.wsgi_app)
    app.server.wsgi_app = recorder  # type: ignore[method-assign]
    dash_duo.driver.set_window_size(1600, 1200)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}{PAGE}")
    dash_duo.wait_for_element("[data-door]", timeout=10)
    wait_until(lambda: last_cost(dash_duo) is not None, 10, "the trends to show this hour's cost per delivery")
    return recorder


def trends(dash_duo) -> list[Any] | None:  # type: ignore[no-untyped-def]
    return dash_duo.driver.execute_script(TRENDS_JS)


def last_cost(dash_duo) -> float | None:  # type: ignore[no-untyped-def]
    """Return this hour's cost per delivery on the trends chart (it grows while a shift is open)."""
    figure = trends(dash_duo) or []
    costs = [y for name, _, y in figure if name == "Cost / delivery"]
    return costs[0][-1] if costs and costs[0] else None


def banner(dash_duo) -> str:  # type: ignore[no-untyped-def]
    element = dash_duo.find_element("#site-banner")
    return element.text if element.is_displayed() else ""


def text_of(dash_duo, selector: str) -> str:  # type: ignore[no-untyped-def]
    return dash_duo.find_element(selector).text


def state_texts(dash_duo) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Return what the page shows of the site's state (PostgreSQL)."""
    return {name: text_of(dash_duo, f"#site-{name}") for name in ("doors", "labor", "stuck-count")}


def seconds_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Return the seconds until ``predicate`` holds, polled every POLL_S."""
    started = time.monotonic()
    wait_until(predicate, timeout_s, what, interval_s=POLL_S)
    return time.monotonic() - started


def deliver_this_hour(runtime: Runtime, count: int) -> None:
    """Post and process deliveries at SEA1 within this hour: its cost per delivery has a value that grows."""
    now = datetime.now(UTC)
    when = max(now - timedelta(minutes=1), truncate(now, "h"))
    promise = {
        "promised_start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "promised_end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    events = [
        make_event("delivery.attempted", time=when, site_id="SEA1", outcome="delivered", order_id=f"HOUR{i}", **promise)
        for i in range(count)
    ]
    assert runtime.ingestor().submit(events).accepted == count
    drain(runtime)


def test_redis_killed_the_site_page_keeps_its_trends_marked_stale_and_its_state_goes_on(redis_runtime, dash_duo):
    runtime, server = redis_runtime
    deliver_this_hour(runtime, 4)
    recorder = started_site_page(dash_duo, runtime)
    assert banner(dash_duo) == ""

    server.kill()
    took = seconds_until(lambda: "live figures stale since" in banner(dash_duo), 4 * SITE_REFRESH_S, "the banner")
    print(f"site page, Redis killed: banner after {took:.2f} s")
    assert took <= 2 * SITE_REFRESH_S, f"banner after {took:.2f} s"
    assert "Redis unreachable" in banner(dash_duo) and "(last known figures shown)" in banner(dash_duo)
    kept = trends(dash_duo)
    # The state comes from PostgreSQL: it goes on (its "as of" moves); the trends stay as they were.
    as_of = text_of(dash_duo, "#site-as-of")
    wait_until(lambda: text_of(dash_duo, "#site-as-of") != as_of, 3 * SITE_REFRESH_S, "the state to refresh")
    assert "History is unavailable" not in banner(dash_duo)
    assert trends(dash_duo) == kept

    # A page opened while Redis is down shows the last known trends, marked stale.
    dash_duo.wait_for_page(f"{dash_duo.server_url}{PAGE}")
    dash_duo.wait_for_element("[data-door]", timeout=10)
    dash_duo.wait_for_contains_text("#site-banner", "live figures stale since", timeout=2 * SITE_REFRESH_S)
    wait_until(lambda: trends(dash_duo) == kept, 2 * SITE_REFRESH_S, "the last known trends after a reload")

    server.restart()  # returns once the server answers PING
    took = seconds_until(lambda: banner(dash_duo) == "", SITE_REFRESH_S + 5, "the banner to go")
    print(f"site page, Redis back: banner gone after {took:.2f} s")
    assert took <= SITE_REFRESH_S + RECOVERY_ALLOWANCE_S, f"banner gone {took:.2f} s after Redis answered"
    cost = last_cost(dash_duo)
    wait_until(lambda: last_cost(dash_duo) != cost, 2 * SITE_REFRESH_S, "the trends to update again")
    assert recorder.errors() == []
    assert dash_duo.get_logs() == []


def test_postgres_stopped_the_site_page_says_history_is_down_and_its_trends_go_on(postgres_runtime, dash_duo):
    runtime, cluster = postgres_runtime
    deliver_this_hour(runtime, 4)
    recorder = started_site_page(dash_duo, runtime)

    cluster.stop("fast")
    took = seconds_until(
        lambda: "History is unavailable (PostgreSQL unreachable since" in banner(dash_duo),
        4 * SITE_REFRESH_S,
        "the banner",
    )
    print(f"site page, PostgreSQL stopped: banner after {took:.2f} s")
    assert took <= 2 * SITE_REFRESH_S, f"banner after {took:.2f} s"
    assert "live figures continue" in banner(dash_duo) and "Redis" not in banner(dash_duo)
    dash_duo.wait_for_contains_text("#site-alerts", "Alerts are unavailable while the database is down", timeout=4)
    before, as_of = state_texts(dash_duo), text_of(dash_duo, "#site-as-of")
    # The live figures go on: this hour's cost per delivery grows with the open shift's pay.
    cost = last_cost(dash_duo)
    wait_until(lambda: (last_cost(dash_duo) or 0) > (cost or 0), 3 * SITE_REFRESH_S, "the live trends to move")
    assert state_texts(dash_duo) == before  # the last known doors, labor and stuck orders stay
    assert text_of(dash_duo, "#site-as-of") == as_of

    # A page opened while PostgreSQL is down shows the last known state, under the banner.
    dash_duo.wait_for_page(f"{dash_duo.server_url}{PAGE}")
    dash_duo.wait_for_contains_text("#site-banner", "History is unavailable", timeout=2 * SITE_REFRESH_S)
    dash_duo.wait_for_text_to_equal("#site-as-of", as_of, timeout=2 * SITE_REFRESH_S)
    assert state_texts(dash_duo) == before
    wait_until(lambda: last_cost(dash_duo) is not None, 2 * SITE_REFRESH_S, "the trends after a reload")

    cluster.start()  # pg_ctl -w: returns once the server accepts connections
    took = seconds_until(lambda: banner(dash_duo) == "", SITE_REFRESH_S + 5, "the banner to go")
    print(f"site page, PostgreSQL back: banner gone after {took:.2f} s")
    assert took <= SITE_REFRESH_S + RECOVERY_ALLOWANCE_S, f"banner gone {took:.2f} s after PostgreSQL answered"
    assert text_of(dash_duo, "#site-as-of") != as_of  # the state is read again
    dash_duo.wait_for_contains_text("#site-alerts", "No open alert at this site", timeout=2 * SITE_REFRESH_S)
    assert recorder.errors() == []
    assert dash_duo.get_logs() == []
