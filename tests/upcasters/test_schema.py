from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from upcasters import (
    UpcasterRegistry,
    compare,
    describe,
    merge_lock,
    read_lock,
    write_lock,
)


class PlacedV1(msgspec.Struct):
    order_id: str
    amount: int


class PlacedAdded(msgspec.Struct):
    order_id: str
    amount: int
    currency: str = "EUR"


class PlacedRequired(msgspec.Struct):
    order_id: str
    amount: int
    currency: str


class PlacedRetyped(msgspec.Struct):
    order_id: str
    amount: float


class PlacedRenamed(msgspec.Struct):
    order_id: str
    total: int


class Row(msgspec.Struct, array_like=True):
    a: int
    b: int = 0


class RowInserted(msgspec.Struct, array_like=True):
    z: int = 0
    a: int = 0
    b: int = 0


def _kinds(lock_cls: type[Any], code_cls: type[Any], **kw: Any) -> list[str]:
    lock = describe([("Placed", kw.pop("lock_schema", 1), lock_cls)])
    code = describe([("Placed", kw.pop("code_schema", 1), code_cls)])
    return [f"{c.kind} {c.subject}" for c in compare(lock, code, kw.get("reg"))]


def test_identical_code_reports_nothing() -> None:
    assert _kinds(PlacedV1, PlacedV1) == []


def test_new_field_with_default_is_safe_for_a_mixed_fleet() -> None:
    assert _kinds(PlacedV1, PlacedAdded) == ["safe Placed.currency"]


def test_new_field_without_default_breaks() -> None:
    assert _kinds(PlacedV1, PlacedRequired) == ["breaking Placed.currency"]


def test_retyped_field_breaks() -> None:
    assert _kinds(PlacedV1, PlacedRetyped) == ["breaking Placed.amount"]


def test_renamed_field_is_a_removal_and_breaks() -> None:
    assert "breaking Placed.amount" in _kinds(PlacedV1, PlacedRenamed)


def test_schema_bump_without_upcaster_breaks() -> None:
    assert _kinds(PlacedV1, PlacedRequired, code_schema=2) == ["breaking Placed"]


def test_schema_bump_with_upcaster_needs_two_step_release() -> None:
    reg = UpcasterRegistry()
    reg.add("Placed", 1, lambda p: {**p, "currency": "EUR"})
    assert _kinds(PlacedV1, PlacedRequired, code_schema=2, reg=reg) == [
        "mixed-fleet-unsafe Placed"
    ]


def test_schema_going_back_breaks() -> None:
    assert _kinds(PlacedV1, PlacedV1, lock_schema=2) == ["breaking Placed"]


def test_vanished_type_breaks_unless_renamed() -> None:
    lock = describe([("OrderCreated", 1, PlacedV1)])
    code = describe([("OrderPlaced", 1, PlacedV1)])
    kinds = [(c.kind, c.subject) for c in compare(lock, code)]
    assert ("breaking", "OrderCreated") in kinds
    reg = UpcasterRegistry()
    reg.rename_type("OrderCreated", "OrderPlaced")
    assert all(c.kind == "safe" for c in compare(lock, code, reg))


def test_array_like_fields_must_be_added_last() -> None:
    lock = describe([("Row", 1, Row)])
    code = describe([("Row", 1, RowInserted)])
    assert [c.kind for c in compare(lock, code)] == ["breaking"]


def test_lock_keeps_history_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "schema.lock"
    write_lock(path, describe([("Placed", 1, PlacedV1)]))
    merged = merge_lock(read_lock(path), describe([("Placed", 2, PlacedRequired)]))
    write_lock(path, merged)
    text = path.read_text()
    doc = read_lock(path)
    assert sorted(doc["events"]["Placed"]["versions"]) == ["1", "2"]
    assert doc["events"]["Placed"]["schema"] == 2
    write_lock(path, doc)
    assert path.read_text() == text  # stable output
