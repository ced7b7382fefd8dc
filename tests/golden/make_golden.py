"""Write the golden histories of ``engine.demo.orders`` release 1.

The files beside this script hold event streams exactly as release 1 of the
order app stored them (``OrderPlaced`` at schema 1) and the state each
instance had when they were written. ``test_golden.py`` replays them under the
current release on SQLite and PostgreSQL and checks that every instance
reaches the same state, then drives the ones still in flight to their end.

Regenerate (only when adding histories: the point of the committed files is
that they do not change when the code does)::

    python tests/golden/make_golden.py

Files:

- ``orders-release1.jsonl``: one stored record per line, in global order:
  ``stream``, ``position``, ``type``, ``data`` (the envelope bytes, base64) and
  ``plain`` (the same envelope decoded to JSON, for reading; the test checks
  that it matches ``data``);
- ``orders-release1.expected.json``: per instance, the pinned version, the
  status, the last position and the state, as release 1 saw them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

HERE = Path(__file__).resolve().parent
HISTORY = HERE / "orders-release1.jsonl"
EXPECTED = HERE / "orders-release1.expected.json"

__all__ = ["EXPECTED", "HISTORY", "main"]


async def _write(engine: Any) -> None:
    from engine.demo.orders import Pay, Ship
    from engine.demo.orders._release1 import PlaceOrder

    async def place(iid: str, amount: int, customer: str = "anonymous") -> None:
        await engine.start(
            "orders",
            PlaceOrder(iid, amount, customer),
            instance_id=iid,
            command_id=f"{iid}:place",
        )

    await place("golden-placed", 40, "ada")
    await place("golden-paid", 75, "grace")
    await engine.send("golden-paid", Pay(75), command_id="golden-paid:pay")
    await place("golden-shipped", 120)
    await engine.send("golden-shipped", Pay(120), command_id="golden-shipped:pay")
    await engine.send("golden-shipped", Ship("ups"), command_id="golden-shipped:ship")
    await place("golden-big", 9_999, "alan")


async def _generate() -> None:
    from engine.demo.orders import release1
    from engine.store import open_store

    store = open_store("memory://")
    engine = release1().engine(store)
    await _write(engine)
    expected: dict[str, Any] = {}
    for info in await engine.instances():
        expected[info.instance_id] = {
            "version": info.version,
            "status": info.status,
            "position": info.position,
            "state": msgspec.to_builtins(info.state),
        }
    lines = []
    for rec in store.iter_all():
        plain = msgspec.msgpack.decode(rec.data)
        lines.append(
            json.dumps(
                {
                    "stream": rec.stream_id,
                    "position": rec.position,
                    "type": rec.type,
                    "data": base64.b64encode(rec.data).decode(),
                    "plain": msgspec.to_builtins(plain, enc_hook=_bytes_hook),
                },
                sort_keys=True,
            )
        )
    await engine.close()
    HISTORY.write_text("\n".join(lines) + "\n")
    EXPECTED.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


def _bytes_hook(obj: Any) -> Any:
    raise TypeError(f"cannot show {type(obj).__name__}")


def main() -> int:
    """Write the golden files; returns the exit code."""
    root = HERE.parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    asyncio.run(_generate())
    print(f"wrote {HISTORY.name} and {EXPECTED.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
