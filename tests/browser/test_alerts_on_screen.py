"""Alerts on screen: the wall's band links to the panel that explains an alert; acknowledging from the site page."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from dashboard.db import alerts
from dashboard.runtime import Runtime


def open_alert(runtime: Runtime, rule: str, site_id: str, message: str) -> int:
    now = datetime.now(UTC) - timedelta(minutes=3)
    with runtime.engine.begin() as connection:
        inserted = connection.execute(
            alerts.insert().values(
                rule=rule,
                site_id=site_id,
                severity="warning",
                status="open",
                opened_at=now,
                message=message,
                suggestion="spread the queue over the open doors",
                last_true_at=now,
            )
        )
    return int(inserted.inserted_primary_key[0])


def click_fresh(dash_duo, selector: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(20):
        try:
            dash_duo.find_element(selector).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{selector} kept being re-drawn")


def stored(runtime: Runtime, alert_id: int) -> sa.Row:
    with runtime.engine.connect() as connection:
        return connection.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()


def test_band_links_to_the_explaining_panel_and_the_site_page_acknowledges(dash_duo, app, runtime, seeded):
    alert_id = open_alert(runtime, "dock_queue", "SEA1", "SEA1: a truck has waited 41 min at D1")
    dash_duo.start_server(app)
    selector = "#wall-band a[href='/sites/SEA1#site-doors']"
    dash_duo.wait_for_text_to_equal(selector, "SEA1: a truck has waited 41 min at D1", timeout=10)
    click_fresh(dash_duo, selector)  # the band is re-drawn whenever what it shows changes
    item = dash_duo.wait_for_element(f"[data-alert-id='{alert_id}']", timeout=10)
    assert dash_duo.driver.current_url.endswith("/sites/SEA1#site-doors")
    assert item.get_attribute("data-status") == "open"
    assert item.find_element(By.CSS_SELECTOR, "a.alert-link").get_attribute("href").endswith("#site-doors")

    item.find_element(By.CSS_SELECTOR, ".alert-ack").click()
    dash_duo.wait_for_element("#alert-ack-comment", timeout=4)
    ok = dash_duo.find_element("#alert-ack-ok")
    assert not ok.is_enabled()  # the comment is required
    dash_duo.find_element("#alert-ack-comment").send_keys("   ")
    assert not ok.is_enabled()
    dash_duo.find_element("#alert-ack-comment").send_keys("opening door D3")
    dash_duo.wait_for_element("#alert-ack-ok:not([disabled])", timeout=2).click()
    dash_duo.wait_for_element(f"[data-alert-id='{alert_id}'][data-status='acknowledged']", timeout=6)
    dash_duo.wait_for_contains_text("#alert-ack-result", "acknowledged by wall-screen-operator", timeout=2)
    row = stored(runtime, alert_id)
    assert (row.status, row.acknowledged_by, row.comment) == ("acknowledged", "wall-screen-operator", "opening door D3")
    assert dash_duo.get_logs() == []


def test_a_read_only_dashboard_shows_alerts_without_acknowledging(dash_duo, runtime, seeded):
    from dashboard.webapp import create_app

    viewer = Runtime(
        runtime.settings.model_copy(update={"dashboard_role": "viewer"}), runtime.redis, runtime.engine, runtime.keys
    )
    alert_id = open_alert(runtime, "labor_imbalance", "SEA1", "SEA1: 40 orders of backlog per active picker")
    dash_duo.start_server(create_app(runtime=viewer))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/sites/SEA1")
    item = dash_duo.wait_for_element(f"[data-alert-id='{alert_id}']", timeout=10)
    assert item.find_element(By.CSS_SELECTOR, "a.alert-link").get_attribute("href").endswith("#site-labor")
    assert item.find_elements(By.CSS_SELECTOR, ".alert-ack") == []
    assert "may not acknowledge" in dash_duo.find_element(".site-page").text
    assert stored(runtime, alert_id).status == "open"
    assert dash_duo.get_logs() == []
