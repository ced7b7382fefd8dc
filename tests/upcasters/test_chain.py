from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upcasters import Emit, UpcastChainError, UpcasterRegistry


def _add(field: str, value: Any):
    def step(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, field: value}

    return step


def test_one_step_brings_payload_to_current() -> None:
    reg = UpcasterRegistry()

    @reg.upcaster("Placed", from_version=1)
    def add_currency(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "currency": "EUR"}

    reg.check({"Placed": 2})
    assert reg.upcast("Placed", 1, {"amount": 3}, {"Placed": 2}) == [
        ("Placed", {"amount": 3, "currency": "EUR"})
    ]


def test_current_version_passes_through_untouched() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, _add("x", 1))
    assert reg.upcast("Placed", 2, {"a": 1}, {"Placed": 2}) == [("Placed", {"a": 1})]


def test_three_steps_apply_in_order() -> None:
    reg = UpcasterRegistry()
    reg.add("T", 1, lambda p: {**p, "trail": [*p.get("trail", []), 1]})
    reg.add("T", 2, lambda p: {**p, "trail": [*p["trail"], 2]})
    reg.add("T", 3, lambda p: {**p, "trail": [*p["trail"], 3]})
    reg.check({"T": 4})
    assert reg.upcast("T", 1, {}, {"T": 4}) == [("T", {"trail": [1, 2, 3]})]
    assert reg.upcast("T", 3, {"trail": []}, {"T": 4}) == [("T", {"trail": [3]})]


def test_gap_in_chain_names_type_and_versions() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, _add("a", 1))
    reg.add("Placed", 3, _add("c", 1))
    with pytest.raises(UpcastChainError, match=r"'Placed' is at schema 4.*2->3"):
        reg.check({"Placed": 4})


def test_missing_chain_for_bumped_schema() -> None:
    reg = UpcasterRegistry()
    with pytest.raises(UpcastChainError, match=r"'Shipped' is at schema 2.*1->2"):
        reg.check({"Shipped": 2})


def test_chain_past_current_version_is_refused() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, _add("a", 1))
    reg.add("Placed", 2, _add("b", 1))
    with pytest.raises(UpcastChainError, match="reads schema 2, but the current"):
        reg.check({"Placed": 2})


def test_duplicate_step_is_refused() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, _add("a", 1))
    with pytest.raises(UpcastChainError, match="two upcasters for 'Placed' schema 1"):
        reg.add("Placed", 1, _add("a", 2))


def test_from_version_must_be_positive() -> None:
    with pytest.raises(UpcastChainError, match="from_version=0"):
        UpcasterRegistry().add("Placed", 0, _add("a", 1))


def test_upcasters_for_unregistered_type_are_reported() -> None:
    reg = UpcasterRegistry()
    reg.add("Ghost", 1, _add("a", 1))
    with pytest.raises(UpcastChainError, match="'Ghost'"):
        reg.check({})


def test_renamed_type_is_read_as_new_name_then_upcast() -> None:
    reg = UpcasterRegistry()
    reg.rename_type("OrderCreated", "OrderPlaced")
    reg.add("OrderPlaced", 1, _add("currency", "EUR"))
    current = {"OrderPlaced": 2}
    reg.check(current)
    assert reg.upcast("OrderCreated", 1, {"id": "o"}, current) == [
        ("OrderPlaced", {"id": "o", "currency": "EUR"})
    ]


def test_rename_checks() -> None:
    reg = UpcasterRegistry()
    reg.rename_type("A", "B")
    with pytest.raises(UpcastChainError, match="already renamed"):
        reg.rename_type("A", "C")
    with pytest.raises(UpcastChainError, match="loop"):
        reg.rename_type("B", "A")
    with pytest.raises(UpcastChainError, match="'B' is not registered"):
        reg.check({})
    with pytest.raises(UpcastChainError, match="still registered"):
        reg.check({"A": 1, "B": 1})


def test_split_and_drop() -> None:
    reg = UpcasterRegistry()

    @reg.upcaster("Checkout", from_version=1)
    def split(p: dict[str, Any]) -> list[Emit]:
        if p.get("test"):
            return []
        return [
            Emit("Placed", {"id": p["id"]}, schema=1),
            Emit("Paid", {"amount": p["amount"]}, schema=1),
        ]

    reg.add("Placed", 1, _add("currency", "EUR"))
    current = {"Checkout": 2, "Placed": 2, "Paid": 1}
    reg.check(current)
    assert reg.upcast("Checkout", 1, {"id": "o", "amount": 5}, current) == [
        ("Placed", {"id": "o", "currency": "EUR"}),
        ("Paid", {"amount": 5}),
    ]
    assert reg.upcast("Checkout", 1, {"test": True}, current) == []


def test_upcaster_returning_garbage_is_named() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, lambda p: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(UpcastChainError, match="returned int"):
        reg.upcast("Placed", 1, {}, {"Placed": 2})


def test_newer_than_current_is_refused() -> None:
    reg = UpcasterRegistry()
    with pytest.raises(UpcastChainError, match="newer than the current"):
        reg.upcast("Placed", 3, {}, {"Placed": 2})


def test_rename_field() -> None:
    reg = UpcasterRegistry()
    reg.rename_field("Placed", from_version=1, old="total", new="amount")
    assert reg.upcast("Placed", 1, {"total": 7, "id": "x"}, {"Placed": 2}) == [
        ("Placed", {"id": "x", "amount": 7})
    ]


payloads = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5))


@given(payload=payloads, start=st.integers(1, 6), head=st.integers(1, 6))
def test_chain_from_any_version_applies_exactly_the_remaining_steps(
    payload: dict[str, Any], start: int, head: int
) -> None:
    """Law: upcasting from v applies steps v..head-1 once each, in order."""
    start = min(start, head)
    reg = UpcasterRegistry()
    for v in range(1, head):
        reg.add("T", v, lambda p, v=v: {**p, "__steps": [*p.get("__steps", []), v]})
    reg.check({"T": head})
    [(name, out)] = reg.upcast("T", start, payload, {"T": head})
    assert name == "T"
    assert out.get("__steps", payload.get("__steps")) == (
        [*payload.get("__steps", []), *range(start, head)]  # type: ignore[list-item]
        if start < head
        else payload.get("__steps")
    )
    assert {k: v for k, v in out.items() if k != "__steps"} == {
        k: v for k, v in payload.items() if k != "__steps"
    }


@given(payload=payloads)
def test_upcast_is_pure(payload: dict[str, Any]) -> None:
    """Law: the stored payload is never modified; same input, same output."""
    reg = UpcasterRegistry()
    reg.add("T", 1, _add("x", 1))
    before = dict(payload)
    first = reg.upcast("T", 1, payload, {"T": 2})
    assert payload == before
    assert reg.upcast("T", 1, payload, {"T": 2}) == first
