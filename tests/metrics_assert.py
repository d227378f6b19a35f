"""Comparing metric answers within the contract's tolerances."""

from __future__ import annotations

from typing import Any


def mismatches(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Return what differs beyond tolerance: counts and rates exact, p95 max(1 s, 2 %), labor 0.01."""
    problems = []
    for name, want in expected.items():
        have = got.get(name)
        if name.startswith("p95_") and want is not None and have is not None:
            ok = abs(have - want) <= max(1.0, 0.02 * abs(want))
        elif name in ("labor_cost", "cost_per_delivery") and want is not None and have is not None:
            ok = abs(have - want) <= max(0.01, 1e-6 * abs(want))
        elif isinstance(want, float) and have is not None:
            ok = abs(have - want) <= 1e-9 * max(1.0, abs(want))
        else:
            ok = have == want
        if not ok:
            problems.append(f"{name}: expected {want!r}, got {have!r}")
    return problems
