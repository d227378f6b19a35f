"""Callbacks, one module per page, each with register(app, sources)."""
