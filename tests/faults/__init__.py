"""Fault tests: killed workers, crashed Redis, stopped PostgreSQL, poison entries."""
