"""Test helpers for schema evolution: payloads of any locked schema version.

The schema lock describes every version of every event type ever locked
(field names, types, defaults). :func:`payloads` turns one version into a
hypothesis strategy of plain payloads, as a reader finds them in stored
envelopes; :func:`assert_upcasts` checks that every generated payload of every
older version goes through the upcaster chain and decodes into the current
struct, exactly as the engine reads it.

Example:
    >>> from engine.testing import assert_upcasts
    >>> def test_orders_upcast():
    ...     assert_upcasts("schema.lock", "OrderPlaced")

Field types the lock names are read back from their text (``str``,
``int | None``, ``list[str]``, ``dict[str, int]``, ``Literal['a', 'b']``...);
for anything else (a nested struct, a datetime) pass a strategy for the field
in ``overrides``. ``upcasters.testing`` re-exports these names.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from engine.core.codec import EventCodec
from engine.core.errors import NonstopError, UnsupportedFieldType
from engine.core.events import EventTypeRegistry, default_event_types
from engine.core.extras import require
from upcasters.chain import UpcasterRegistry, default_upcasters
from upcasters.schema import read_lock

require("hypothesis", "testing", "engine.testing")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

__all__ = [
    "assert_upcasts",
    "payloads",
    "stored_payloads",
]

Lock = Mapping[str, Any] | Path | str
Strategy = st.SearchStrategy[Any]


def payloads(
    lock: Lock,
    type_name: str,
    schema: int,
    *,
    overrides: Mapping[str, Strategy] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Plain payloads of ``type_name`` at locked schema version ``schema``.

    Required fields are always present; fields with a default are sometimes
    left out (a reader fills the default in).

    Raises:
        KeyError: the lock has no such type or version (the message lists the
            locked ones).
        UnsupportedFieldType: a field's type is not one the lock text can be
            turned into a strategy for, and ``overrides`` has none.
    """
    doc = _lock(lock)
    fields = _version(doc, type_name, schema)["fields"]
    given_: Mapping[str, Strategy] = overrides or {}
    required: dict[str, Strategy] = {}
    optional: dict[str, Strategy] = {}
    for f in fields:
        name = f["name"]
        try:
            strategy = given_[name] if name in given_ else _strategy(f["type"])
        except UnsupportedFieldType as exc:
            raise UnsupportedFieldType(
                f"{type_name} schema {schema}, field {name!r}: {exc}; pass "
                f"overrides={{{name!r}: <strategy>}}"
            ) from None
        (required if f.get("required") else optional)[name] = strategy
    return st.fixed_dictionaries(required, optional=optional)


def stored_payloads(
    lock: Lock,
    type_name: str,
    *,
    below: int | None = None,
    overrides: Mapping[str, Strategy] | None = None,
) -> st.SearchStrategy[tuple[int, dict[str, Any]]]:
    """``(schema, payload)`` pairs of any locked version of ``type_name``.

    Args:
        lock: The lock document, or the path of the lock file.
        type_name: The event type.
        below: Only versions lower than this (e.g. the current schema: only the
            ones that need upcasting).
        overrides: Strategies for fields whose type the lock cannot express.
    """
    doc = _lock(lock)
    entry = _entry(doc, type_name)
    versions = sorted(int(v) for v in entry["versions"])
    if below is not None:
        versions = [v for v in versions if v < below]
    if not versions:
        raise KeyError(f"{type_name!r} has no locked schema version below {below}")
    return st.one_of(
        *[
            _tagged(v, payloads(doc, type_name, v, overrides=overrides))
            for v in versions
        ]
    )


def _tagged(
    schema: int, strategy: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[tuple[int, dict[str, Any]]]:
    def tag(payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return schema, payload

    return strategy.map(tag)


def assert_upcasts(
    lock: Lock,
    type_name: str,
    *,
    types: EventTypeRegistry | None = None,
    upcasters: UpcasterRegistry | None = None,
    overrides: Mapping[str, Strategy] | None = None,
    max_examples: int = 100,
) -> None:
    """Assert that every locked version of ``type_name`` reads into today's structs.

    Each generated payload is wrapped in a stored envelope at its schema version
    and decoded by an :class:`EventCodec` with the upcasters installed, the way
    the engine reads it; each event that comes out (a split may give several,
    a drop none) must be an instance of its registered struct.

    Args:
        lock: The lock document, or the path of the lock file.
        type_name: The stored type name (a renamed type's old name works).
        types: Event types of the code (the process-wide registry by default).
        upcasters: Upcaster chains (the process-wide registry by default).
        overrides: Strategies for fields the lock cannot express.
        max_examples: Payloads tried per run.

    Raises:
        AssertionError: a payload failed; hypothesis shows the smallest one.
    """
    codec = EventCodec(types if types is not None else default_event_types())
    codec.use_upcasters(upcasters if upcasters is not None else default_upcasters())
    strategy = stored_payloads(lock, type_name, overrides=overrides)

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(strategy)
    def check(stored: tuple[int, dict[str, Any]]) -> None:
        schema, payload = stored
        data = msgspec.msgpack.encode([schema, payload, 0, "upcast-check@1"])
        try:
            events = codec.decode("upcast-check", 1, 1, type_name, data)
        except NonstopError as exc:
            raise AssertionError(
                f"{type_name} schema {schema} payload {payload!r} does not upcast: "
                f"{exc}"
            ) from exc
        for e in events:
            cls = codec.types.by_name(e.type).cls
            assert isinstance(e.event, cls), (type_name, schema, payload, e)

    check()


# ------------------------------------------------------------------ locks


def _lock(lock: Lock) -> Mapping[str, Any]:
    if isinstance(lock, (str, Path)):
        return read_lock(Path(lock))
    return lock


def _entry(doc: Mapping[str, Any], type_name: str) -> Mapping[str, Any]:
    events: Mapping[str, Any] = doc.get("events", {})
    if type_name not in events:
        raise KeyError(
            f"event type {type_name!r} is not in the lock; locked: "
            f"{', '.join(sorted(events)) or 'none'}"
        )
    entry: Mapping[str, Any] = events[type_name]
    return entry


def _version(doc: Mapping[str, Any], type_name: str, schema: int) -> Mapping[str, Any]:
    versions: Mapping[str, Any] = _entry(doc, type_name)["versions"]
    if str(schema) not in versions:
        raise KeyError(
            f"{type_name!r} schema {schema} is not in the lock; locked versions: "
            f"{', '.join(sorted(versions, key=int))}"
        )
    found: Mapping[str, Any] = versions[str(schema)]
    return found


# ------------------------------------------------------- type text parsing

_TEXT = st.text(max_size=20)
_LEAVES: dict[str, Strategy] = {
    "str": _TEXT,
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=20),
    "None": st.none(),
    "Any": st.none() | st.booleans() | st.integers() | _TEXT,
}
_SEQUENCES = {"list", "tuple", "set", "frozenset", "List", "Tuple", "Set"}


def _strategy(text: str) -> Strategy:
    """A strategy for the plain (msgpack-decoded) values of a locked type."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise UnsupportedFieldType(f"cannot read the type {text!r}") from None
    return _node(node, text)


def _node(node: ast.expr, text: str) -> Strategy:
    if isinstance(node, ast.Constant) and node.value is None:
        return st.none()
    if isinstance(node, ast.Name):
        if node.id in _LEAVES:
            return _LEAVES[node.id]
        raise UnsupportedFieldType(f"no built-in strategy for {node.id!r} in {text!r}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _node(node.left, text) | _node(node.right, text)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return _generic(node.value.id, _args(node.slice), text)
    raise UnsupportedFieldType(f"cannot read the type {text!r}")


def _args(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _generic(name: str, args: list[ast.expr], text: str) -> Strategy:
    if name == "Literal":
        values = [a.value for a in args if isinstance(a, ast.Constant)]
        if len(values) != len(args):
            raise UnsupportedFieldType(f"cannot read the literal in {text!r}")
        return st.sampled_from(values)
    if name == "Optional" and len(args) == 1:
        return st.none() | _node(args[0], text)
    if name == "Union":
        return st.one_of(*[_node(a, text) for a in args])
    if name in _SEQUENCES:
        if name.lower() == "tuple" and not _variadic(args):
            return st.tuples(*[_node(a, text) for a in args]).map(list)
        item = _node(args[0], text)
        unique: Callable[[Any], Any] | None = (
            _key if name.lower() in ("set", "frozenset") else None
        )
        return st.lists(item, max_size=5, unique_by=unique)
    if name in ("dict", "Dict") and len(args) == 2:
        return st.dictionaries(_node(args[0], text), _node(args[1], text), max_size=5)
    raise UnsupportedFieldType(f"no built-in strategy for {name!r} in {text!r}")


def _variadic(args: list[ast.expr]) -> bool:
    return len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is ...


def _key(value: Any) -> Any:
    return msgspec.msgpack.encode(value)
