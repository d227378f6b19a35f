"""Narrow adapters the dashboard reads through: live figures (Redis), history (SQL)."""
