"""Golden histories: streams stored by release 1 replay under the current release.

The files were written by ``make_golden.py`` (see there to regenerate) with
``OrderPlaced`` at schema 1; the current code reads them through the
``add_currency`` upcaster, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec

from engine.demo.orders import OrderPlaced, Pay, Ship, release2
from engine.store import NewRecord, open_store
from tests.golden.make_golden import EXPECTED, HISTORY


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in HISTORY.read_text().splitlines()]


def _load(url: str) -> None:
    with open_store(url) as store:
        store.append(
            [
                NewRecord(r["stream"], r["position"], r["type"], _bytes(r))
                for r in _records()
            ]
        )


def _bytes(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["data"])


def test_golden_files_are_consistent_and_hold_schema_1() -> None:
    records = _records()
    expected = json.loads(EXPECTED.read_text())
    for r in records:
        plain = msgspec.to_builtins(msgspec.msgpack.decode(_bytes(r)))
        assert plain == r["plain"], (r["stream"], r["position"])
    placed = [r for r in records if r["type"] == "OrderPlaced"]
    assert placed and {r["plain"][0] for r in placed} == {1}
    assert all("currency" not in r["plain"][1] for r in placed)
    assert {r["stream"] for r in records} == set(expected)


async def test_golden_histories_replay_to_the_recorded_states(
    durable_url: str,
) -> None:
    _load(durable_url)
    expected = json.loads(EXPECTED.read_text())
    async with release2().engine(durable_url) as engine:
        for iid, want in expected.items():
            info = await engine.get(iid)
            assert (info.version, info.status, info.position) == (
                want["version"],
                want["status"],
                want["position"],
            ), iid
            assert msgspec.to_builtins(info.state) == want["state"], iid
            history = await engine.history(iid)
            (placed,) = [e for e in history if e.type == "OrderPlaced"]
            assert (placed.stored_schema, placed.schema) == (1, 2)
            assert isinstance(placed.event, OrderPlaced)
            assert placed.event.currency == "EUR"


async def test_golden_v1_instances_in_flight_finish_under_the_new_release(
    durable_url: str,
) -> None:
    _load(durable_url)
    expected = json.loads(EXPECTED.read_text())
    running = [i for i, w in expected.items() if w["status"] == "running"]
    assert len(running) >= 2
    async with release2().engine(durable_url) as engine:
        for iid in running:
            info = await engine.get(iid)
            if info.state.stage == "placed":
                again = await engine.send(iid, Pay(info.state.amount))
                assert again.state.stage == "paid"
            done = await engine.send(iid, Ship("dhl"), command_id=f"{iid}:ship")
            assert (done.status, done.version) == ("completed", 1)
            history = await engine.history(iid)
            assert {e.workflow for e in history} == {"orders@1"}
            assert [e.stored_schema for e in history if e.type == "OrderPlaced"] == [1]
        paid = await engine.send("golden-paid", Pay(75), command_id="golden-paid:pay")
        assert paid.applied is False  # its command id came back from the golden file
