"""The pipeline page in headless Chromium: live counters that match the API."""

from __future__ import annotations

import threading

from dashboard.stream import pipeline_status
from tests.helpers import make_event


def tile_value(dash_duo, key: str) -> str:  # type: ignore[no-untyped-def]
    return dash_duo.find_element(f"[data-tile='{key}'] .tile-value").text


def test_pipeline_page_shows_the_live_counters(dash_duo, app, runtime):
    stop = threading.Event()
    worker = runtime.start_worker_thread(stop)
    try:
        ingestor = runtime.ingestor()
        ingestor.submit([make_event(event_id=f"p{i}") for i in range(1200)])
        ingestor.submit([make_event(event_id="p1"), make_event("delivery.attempted", attempt=0)])
        dash_duo.start_server(app)
        dash_duo.wait_for_page(f"{dash_duo.server_url}/pipeline")
        dash_duo.wait_for_text_to_equal("[data-tile='accepted'] .tile-value", "1,200", timeout=10)
        dash_duo.wait_for_text_to_equal("[data-tile='backlog'] .tile-value", "0", timeout=10)
        status = pipeline_status(runtime.redis, runtime.keys)
        assert (status.accepted, status.duplicates, status.rejected) == (1200, 1, 1)
        assert tile_value(dash_duo, "duplicates") == "1"
        assert tile_value(dash_duo, "rejected") == "1"
        assert tile_value(dash_duo, "dead_letters") == "0"
        assert tile_value(dash_duo, "consumers") == "1"
        assert dash_duo.find_element("[data-tile='rejected']").get_attribute("class") == "tile tile-warn"
        assert "data as of" in dash_duo.find_element("#pipeline-as-of").text

        ingestor.submit([make_event(event_id=f"q{i}") for i in range(34)])
        dash_duo.wait_for_text_to_equal("[data-tile='accepted'] .tile-value", "1,234", timeout=3)
        assert dash_duo.get_logs() == []
    finally:
        stop.set()
        worker.join(timeout=5)
