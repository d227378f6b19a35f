"""Component ids, in one place, so layouts and callbacks cannot drift apart."""

from __future__ import annotations

LOCATION = "url"
PAGE = "page"

PIPELINE_INTERVAL = "pipeline-interval"
PIPELINE_TILES = "pipeline-tiles"
PIPELINE_AS_OF = "pipeline-as-of"
PIPELINE_ERROR = "pipeline-error"
NAV = "nav"

# -- wall screen -----------------------------------------------------------------------
WALL_INTERVAL = "wall-interval"
WALL_SPARK_INTERVAL = "wall-spark-interval"
WALL_ROTATE_INTERVAL = "wall-rotate-interval"
WALL_AS_OF = "wall-as-of"
WALL_FRESHNESS = "wall-freshness"
WALL_BANNER = "wall-banner"
WALL_STALE = "wall-stale"
WALL_BAND = "wall-band"
WALL_GRID = "wall-grid"
WALL_PIPELINE = "wall-pipeline"
WALL_FOCUS_TEXT = "wall-focus-text"
WALL_SCOPES = "wall-scopes"  # the scopes whose rows are on screen
WALL_SITES = "wall-sites"  # the scopes the latest snapshot has (set only when they change)
WALL_FOCUS = "wall-focus"
WALL_SPARK_VERSIONS = "wall-spark-versions"
WALL_VIEW = "wall-view"  # the tick's view model, from the server; the browser applies it to the page
WALL_RENDERED = "wall-rendered"  # fingerprints of the band and pipeline strip on screen
WALL_SPARK_VIEW = "wall-spark-view"  # the sparklines that changed, from the server
# Pattern-matching ids: {"type": ..., "scope": site or "*", "metric": ...}.
WALL_ROW = "wall-row"
WALL_TILE = "wall-tile"
WALL_VALUE = "wall-value"
WALL_SUB = "wall-sub"
WALL_SPARK = "wall-spark"

# -- degradation mode controls (wall screen and site page) -----------------------------
MODES_OPEN = "modes-open"
MODES_DIALOG = "modes-dialog"
MODE_SCOPE = "mode-scope"
MODE_PANEL = "mode-panel"
MODE_TOGGLE = "mode-toggle"  # pattern: {"type": MODE_TOGGLE, "mode": ..., "scope": ..., "to": "on" | "off"}
MODE_CONFIRM = "mode-confirm"
MODE_CONFIRM_TEXT = "mode-confirm-text"
MODE_REASON = "mode-reason"
MODE_CONFIRM_OK = "mode-confirm-ok"
MODE_CONFIRM_CANCEL = "mode-confirm-cancel"
MODE_CONFIRM_ERROR = "mode-confirm-error"
MODE_PENDING = "mode-pending"
MODE_REFRESH = "mode-refresh"
MODE_RESULT = "mode-result"

# -- site drill-down -------------------------------------------------------------------
SITE_ID = "site-id"
SITE_INTERVAL = "site-interval"
SITE_AS_OF = "site-as-of"
SITE_BANNER = "site-banner"
SITE_DOORS = "site-doors"
SITE_LABOR = "site-labor"
SITE_STUCK = "site-stuck"
SITE_STUCK_COUNT = "site-stuck-count"
SITE_TRENDS = "site-trends"
SITE_SCROLLED = "site-scrolled"  # whether the page has scrolled to the URL's #anchor yet
SITE_ALERTS = "site-alerts"
SITE_ALERTS_VERSION = "site-alerts-version"  # fingerprint of the alerts on screen

# -- acknowledging an alert (site page) ----------------------------------------------------
ALERT_ACK = "alert-ack"  # pattern: {"type": ALERT_ACK, "alert": id}
ALERT_ACK_DIALOG = "alert-ack-dialog"
ALERT_ACK_TEXT = "alert-ack-text"
ALERT_ACK_COMMENT = "alert-ack-comment"
ALERT_ACK_OK = "alert-ack-ok"
ALERT_ACK_CANCEL = "alert-ack-cancel"
ALERT_ACK_ERROR = "alert-ack-error"
ALERT_ACK_PENDING = "alert-ack-pending"
ALERT_ACK_REFRESH = "alert-ack-refresh"
ALERT_ACK_RESULT = "alert-ack-result"

# -- order trail -----------------------------------------------------------------------
ORDER_ID = "order-id"
ORDER_TRAIL = "order-trail"
ORDER_BANNER = "order-banner"
ORDER_SUMMARY = "order-summary"

# -- trade-offs ------------------------------------------------------------------------
TRADE_PRESET = "trade-preset"
TRADE_DATES = "trade-dates"
TRADE_SITE = "trade-site"
TRADE_INTERVAL = "trade-interval"
TRADE_BANNER = "trade-banner"
TRADE_SERIES = "trade-series"
TRADE_FAILURES = "trade-failures"
TRADE_SCATTER = "trade-scatter"
TRADE_CHANGE = "trade-change"
TRADE_SPAN = "trade-span"
TRADE_COMPARE = "trade-compare"
TRADE_TABLE = "trade-table"
TRADE_CSV = "trade-csv"
TRADE_DOWNLOAD = "trade-download"
TRADE_AS_OF = "trade-as-of"
TRADE_CHANGES = "trade-changes"  # the mode changes of the range (a store)
