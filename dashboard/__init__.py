"""Core of the control tower: settings, events, ingest, history, CLI (no Dash UI)."""
