"""The site page and the order trail in headless Chromium: the API's figures, sorting, a click to the trail."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from selenium.common.exceptions import StaleElementReferenceException

from tests.browser.conftest import drain
from tests.helpers import make_event

T = TypeVar("T")


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_site(runtime) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    late = {"promised_start": z(now - timedelta(hours=4)), "promised_end": z(now - timedelta(hours=2))}
    later = {"promised_start": z(now + timedelta(hours=1)), "promised_end": z(now + timedelta(hours=3))}
    events = [
        make_event(
            "dock.status_changed",
            time=now - timedelta(minutes=40),
            dock_id="D1",
            status="out_of_service",
            reason="door jammed",
        ),
        make_event("truck.arrived", time=now - timedelta(minutes=35), route_id="R1", dock_id="D2"),
        make_event("truck.arrived", time=now - timedelta(minutes=5), route_id="R2", dock_id="D2"),
        make_event(
            "worker.shift_started", time=now - timedelta(hours=5), worker_id="P1", role="picker", hourly_cost=20
        ),
        make_event(
            "worker.shift_started", time=now - timedelta(hours=5), worker_id="K1", role="packer", hourly_cost=20
        ),
        make_event("worker.absent", time=now - timedelta(hours=5), worker_id="P4", role="picker"),
        make_event("order.created", time=now - timedelta(hours=5), order_id="OLD", priority="express", **late),
        make_event("order.created", time=now - timedelta(hours=4), order_id="STALL", priority="standard", **later),
        make_event("order.picked", time=now - timedelta(hours=3), order_id="STALL", worker_id="P1"),
        make_event("order.created", time=now - timedelta(minutes=10), order_id="FRESH", priority="standard", **later),
        make_event(
            "order.created",
            time=now - timedelta(minutes=10),
            order_id="OTHER",
            site_id="PDX2",
            priority="standard",
            **later,
        ),
    ]
    runtime.ingestor().submit(events)
    drain(runtime)


def retry_stale(read: Callable[[], T], tries: int = 5) -> T:
    """Run a read of the page again when a refresh replaced the elements it held."""
    for attempt in range(tries):
        try:
            return read()
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def test_site_page_shows_the_api_state_and_opens_an_order_trail(dash_duo, app, runtime, api):
    seed_site(runtime)
    dash_duo.driver.set_window_size(1600, 1200)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/sites/SEA1")
    dash_duo.wait_for_element("[data-door='D1']", timeout=10)
    state = api("/api/v1/sites/SEA1/state")
    doors = {door["dock_id"]: door for door in state["docks"]}
    # The page refreshes itself: wait_for_text_to_equal re-finds elements that a refresh replaced.
    assert doors["D1"]["reason"] == "door jammed"
    dash_duo.wait_for_text_to_equal("[data-door='D1'] .door-reason", doors["D1"]["reason"], timeout=5)
    dash_duo.wait_for_text_to_equal(
        "[data-door='D2'] .door-queue", f"{doors['D2']['trucks_waiting']} waiting", timeout=5
    )
    for stat, value in (
        ("active-picker", str(state["active_workers"]["picker"])),
        ("absent", str(state["absent_workers"])),
        ("backlog", str(state["backlog"])),
        ("backlog-per-picker", f"{state['backlog_per_active_picker']:.1f}"),
    ):
        dash_duo.wait_for_text_to_equal(f"[data-stat='{stat}'] .stat-value", value, timeout=5)

    dash_duo.wait_for_element(".stuck-grid .ag-row[row-id='STALL']", timeout=10)
    shown = retry_stale(
        lambda: [
            row.get_attribute("row-id")
            for row in dash_duo.driver.find_elements("css selector", ".stuck-grid .ag-center-cols-container .ag-row")
        ]
    )
    assert sorted(shown) == sorted(order["order_id"] for order in state["stuck_orders"]) == ["OLD", "STALL"]
    dash_duo.wait_for_text_to_equal("#site-stuck-count", f"({state['stuck_count']})", timeout=5)

    def click_stall() -> None:
        cell = dash_duo.find_element(
            ".stuck-grid .ag-pinned-left-cols-container .ag-row[row-id='STALL'] [col-id='order_id']"
        )
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
        cell.click()

    retry_stale(click_stall)
    # The site page's own grid has a second row too: wait for the trail's.
    dash_duo.wait_for_element("#order-trail .ag-row[row-index='1']", timeout=10)
    assert dash_duo.driver.current_url.endswith("/orders/STALL")
    trail = api("/api/v1/orders/STALL/trail")["events"]

    def shown_trail() -> dict[int, tuple[str, ...]]:
        rows = dash_duo.driver.find_elements("css selector", "#order-trail .ag-center-cols-container .ag-row")
        return {
            int(row.get_attribute("row-index")): tuple(
                row.find_element("css selector", f"[col-id='{col}']").text
                for col in ("type", "source", "time", "received_at")
            )
            for row in rows
        }

    shown_rows = retry_stale(shown_trail)
    assert len(shown_rows) == len(trail) == 2
    for index, event in enumerate(trail):
        assert shown_rows[index] == (
            event["type"],
            event["source"],
            event["time"][:23].replace("T", " "),
            event["received_at"][:23].replace("T", " "),
        )
    assert dash_duo.get_logs() == []


def test_unknown_order_and_empty_site_say_what_is_missing(dash_duo, app):
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/orders/NOPE")
    dash_duo.wait_for_text_to_equal("#order-banner", "No event of order 'NOPE' is in history.", timeout=10)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/sites/NOPE")
    dash_duo.wait_for_contains_text("#site-doors", "No dock door seen yet", timeout=10)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/")
    dash_duo.wait_for_contains_text("#wall-grid", "No site has sent an event yet", timeout=10)
    assert dash_duo.get_logs() == []
