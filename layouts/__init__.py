"""Page layouts: pure functions that build components."""
