"""Component ids, in one place, so layouts and callbacks cannot drift apart."""

from __future__ import annotations

LOCATION = "url"
PAGE = "page"

PIPELINE_INTERVAL = "pipeline-interval"
PIPELINE_TILES = "pipeline-tiles"
PIPELINE_AS_OF = "pipeline-as-of"
PIPELINE_ERROR = "pipeline-error"
