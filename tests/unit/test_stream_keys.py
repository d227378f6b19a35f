"""Unit tests of the Redis key names and stream entry ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.stream import Keys, entry_ms

KEYS = Keys("tower")


def test_seen_is_deterministic() -> None:
    assert KEYS.seen("/sites/SEA1/wms", "evt-1") == Keys("tower").seen("/sites/SEA1/wms", "evt-1")


def test_seen_differs_when_id_differs() -> None:
    assert KEYS.seen("/sites/SEA1/wms", "evt-1") != KEYS.seen("/sites/SEA1/wms", "evt-2")


def test_seen_differs_when_source_differs() -> None:
    # The same id from two sources is two events.
    assert KEYS.seen("/sites/SEA1/wms", "evt-1") != KEYS.seen("/sites/JBL4/wms", "evt-1")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("ab", "c"), ("a", "bc")),
        (("a", "bc"), ("abc", "")),
        (("/s", "1/2"), ("/s1/", "2")),
        (("é", "x"), ("", "éx")),
    ],
)
def test_seen_is_unambiguous_about_where_source_ends(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert KEYS.seen(*first) != KEYS.seen(*second)


def test_seen_key_is_under_the_prefix_and_short() -> None:
    key = Keys("test-abc").seen("/drivers/DRV-12/app", "x" * 128)

    assert isinstance(key, bytes)
    assert key.startswith(b"test-abc:seen:")
    assert len(key) == len(b"test-abc:seen:") + 16


def test_seen_differs_between_prefixes() -> None:
    assert Keys("a").seen("s", "1") != Keys("b").seen("s", "1")


def test_other_keys_are_under_the_prefix() -> None:
    keys = Keys("tower")

    assert (keys.stream, keys.dead, keys.stats, keys.failures) == (
        "tower:events",
        "tower:dead",
        "tower:stats",
        "tower:failures",
    )
    assert keys.rate("accepted", 1700000000) == "tower:rate:accepted:1700000000"


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=2, max_size=40), st.data())
def test_property_every_split_of_a_text_gives_its_own_key(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=len(text) - 1), label="cut")

    assert KEYS.seen(text[:cut], text[cut:]) != KEYS.seen(text[: cut - 1], text[cut - 1 :])


@pytest.mark.parametrize(
    ("entry_id", "expected"),
    [
        ("1700000000123-5", 1700000000123),
        (b"1700000000123-5", 1700000000123),
        ("1700000000123-0", 1700000000123),
        (b"0-1", 0),
    ],
)
def test_entry_ms_is_the_millisecond_part(entry_id: str | bytes, expected: int) -> None:
    assert entry_ms(entry_id) == expected
