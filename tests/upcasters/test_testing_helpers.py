"""The helpers users get for their own tests: payloads from the lock, assert_upcasts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import EventTypeRegistry, UnsupportedFieldType
from engine.demo import orders
from engine.demo.orders import _release1, release2
from engine.testing import (
    assert_upcasts,
    payloads,
    stored_payloads,
)
from upcasters import UpcasterRegistry, describe

LOCK = Path(orders.__file__).with_name("schema.lock")


def test_every_locked_orderplaced_upcasts_into_the_current_struct() -> None:
    current = release2()
    assert_upcasts(
        LOCK, "OrderPlaced", types=current.types, upcasters=current.upcasters
    )


def test_assert_upcasts_catches_an_upcaster_that_forgets_a_field() -> None:
    current = release2()
    broken = UpcasterRegistry()
    broken.add("OrderPlaced", 1, lambda p: dict(p))  # no currency
    with pytest.raises(AssertionError, match="OrderPlaced schema 1"):
        assert_upcasts(
            LOCK, "OrderPlaced", types=current.types, upcasters=broken, max_examples=10
        )


@settings(max_examples=50, deadline=None)
@given(payloads(LOCK, "OrderPlaced", 1))
def test_schema_1_payloads_are_what_release_1_stored(payload: dict[str, Any]) -> None:
    placed = msgspec.convert(payload, _release1.OrderPlaced)
    assert msgspec.to_builtins(placed) == payload
    assert "currency" not in payload


@settings(max_examples=50, deadline=None)
@given(stored_payloads(LOCK, "OrderPlaced", below=2))
def test_below_keeps_only_versions_that_need_upcasting(
    stored: tuple[int, dict[str, Any]],
) -> None:
    assert stored[0] == 1


class Rich(msgspec.Struct):
    name: str
    count: int
    ratio: float | None
    stage: Literal["new", "done"]
    tags: tuple[str, ...]
    pair: tuple[int, str]
    scores: dict[str, int]
    blob: bytes = b""
    flags: list[bool] = []
    note: str | None = None


RICH_LOCK = describe([("Rich", 1, Rich)])


@settings(max_examples=100, deadline=None)
@given(payloads(RICH_LOCK, "Rich", 1))
def test_generated_payloads_fit_the_described_struct(payload: dict[str, Any]) -> None:
    msgspec.convert(payload, Rich)  # raises if a generated value does not fit
    required = {"name", "count", "ratio", "stage", "tags", "pair", "scores"}
    assert required <= set(payload)


class Inner(msgspec.Struct):
    x: int


class Outer(msgspec.Struct):
    inner: Inner


def test_a_type_the_lock_cannot_express_needs_an_override() -> None:
    lock = describe([("Outer", 1, Outer)])
    with pytest.raises(UnsupportedFieldType, match=r"field 'inner'.*overrides"):
        payloads(lock, "Outer", 1)
    strategy = payloads(lock, "Outer", 1, overrides={"inner": st.just({"x": 1})})

    @settings(max_examples=5, deadline=None)
    @given(strategy)
    def fits(payload: dict[str, Any]) -> None:
        assert msgspec.convert(payload, Outer) == Outer(Inner(1))

    fits()


def test_unknown_type_or_version_names_what_is_locked() -> None:
    with pytest.raises(KeyError, match="locked versions: 1, 2"):
        payloads(LOCK, "OrderPlaced", 7)
    with pytest.raises(KeyError, match="OrderPlaced"):
        payloads(LOCK, "Nope", 1)


def test_a_renamed_type_is_checked_against_its_new_struct() -> None:
    class Half(msgspec.Struct):
        order_id: str

    types = EventTypeRegistry()
    types.register(Half, "Half")
    lock = describe([("Whole", 1, Inner)])
    steps = UpcasterRegistry()
    steps.rename_type("Whole", "Half")
    with pytest.raises(AssertionError, match="Whole schema 1"):
        assert_upcasts(lock, "Whole", types=types, upcasters=steps, max_examples=5)


def test_upcasters_testing_re_exports_the_helpers() -> None:
    import engine.testing
    import upcasters.testing

    for name in upcasters.testing.__all__:
        assert getattr(upcasters.testing, name) is getattr(engine.testing, name)
