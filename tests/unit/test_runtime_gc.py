"""The cycle collector, tuned for batches, still frees cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from dashboard.runtime import tune_gc


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


@pytest.fixture
def tuned() -> Iterator[None]:
    thresholds = gc.get_threshold()
    tune_gc()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_cycle_made_after_tuning_is_freed_by_a_batch_worth_of_allocations(tuned: None) -> None:
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    alive = weakref.ref(first)
    del first, second

    # What one 2,000-event batch allocates, about: the collector must have run by then.
    batch = [[index] for index in range(200_000)]
    del batch

    assert alive() is None


def test_objects_alive_at_start_up_are_left_out_of_collections(tuned: None) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] > 700  # collections less often than Python's default
