"""Mode toggles in headless Chromium: confirm with a reason, the real state comes back, read-only sees no control."""

from __future__ import annotations

import pytest

from tests.browser.conftest import drain

TOGGLE = "[data-mode='priority_only'][data-scope='{scope}'] .mode-toggle"
STATE = "[data-mode='priority_only'][data-scope='{scope}'] [data-state]"


def flip(dash_duo, scope: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    dash_duo.find_element(TOGGLE.format(scope=scope)).click()
    dash_duo.wait_for_element("#mode-confirm-ok", timeout=5)
    assert dash_duo.find_element("#mode-confirm-ok").get_attribute("disabled") is not None  # a reason is required
    dash_duo.find_element("#mode-reason").send_keys(reason)
    dash_duo.wait_for_element("#mode-confirm-ok:not([disabled])", timeout=5)
    dash_duo.find_element("#mode-confirm-ok").click()


def test_mode_toggle_round_trips_from_the_wall_screen(dash_duo, app, runtime, api):
    dash_duo.start_server(app)
    dash_duo.wait_for_element("#modes-open", timeout=10).click()
    dash_duo.wait_for_element(STATE.format(scope="*"), timeout=5)
    assert dash_duo.find_element(STATE.format(scope="*")).get_attribute("data-state") == "off"

    flip(dash_duo, "*", "ETA service degraded")
    dash_duo.wait_for_element(f"{STATE.format(scope='*')}[data-state='on']", timeout=5)
    states = {(m["mode"], m["site_id"]): m for m in api("/api/v1/modes")}
    assert states[("priority_only", "*")]["enabled"] is True
    assert states[("priority_only", "*")]["changed_by"] == "wall-screen-operator"
    audit = api("/api/v1/modes/audit?mode=priority_only")
    assert (audit[0]["changed_by"], audit[0]["reason"], audit[0]["new_enabled"]) == (
        "wall-screen-operator",
        "ETA service degraded",
        True,
    )
    assert "turned on" in dash_duo.find_element("#mode-result").text
    # The band shows it once the next snapshot is taken.
    dash_duo.find_element(".modal.show .btn-close").click()
    dash_duo.wait_for_element("[data-mode='priority_only|*']", timeout=3)

    dash_duo.find_element("#modes-open").click()
    dash_duo.wait_for_element(TOGGLE.format(scope="*"), timeout=5)
    flip(dash_duo, "*", "ETA service back")
    dash_duo.wait_for_element(f"{STATE.format(scope='*')}[data-state='off']", timeout=5)
    states = {(m["mode"], m["site_id"]): m for m in api("/api/v1/modes")}
    assert states[("priority_only", "*")]["enabled"] is False
    drain(runtime)  # the two mode.changed events reach history
    assert dash_duo.get_logs() == []


def test_mode_toggle_on_the_site_page_is_scoped_to_the_site(dash_duo, app, runtime, api, seeded):
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/sites/SEA1")
    dash_duo.wait_for_element(TOGGLE.format(scope="SEA1"), timeout=10)
    flip(dash_duo, "SEA1", "dock door down")
    dash_duo.wait_for_element(f"{STATE.format(scope='SEA1')}[data-state='on']", timeout=5)
    states = {(m["mode"], m["site_id"]): m for m in api("/api/v1/modes")}
    assert states[("priority_only", "SEA1")]["enabled"] is True
    assert ("priority_only", "*") not in states or not states[("priority_only", "*")]["enabled"]
    assert dash_duo.get_logs() == []


@pytest.fixture
def read_only_settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"dashboard_role": "viewer"})


def test_read_only_role_sees_the_state_without_controls(dash_duo, read_only_settings, runtime, seeded):
    from dashboard.runtime import Runtime
    from dashboard.webapp import create_app

    viewer_app = create_app(runtime=Runtime(read_only_settings, runtime.redis, runtime.engine, runtime.keys))
    dash_duo.start_server(viewer_app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/sites/SEA1")
    dash_duo.wait_for_element(STATE.format(scope="SEA1"), timeout=10)
    assert dash_duo.driver.find_elements("css selector", ".mode-toggle") == []
    assert "Read-only" in dash_duo.find_element(".mode-readonly").text
    assert dash_duo.get_logs() == []
