"""Code fingerprints of workflow versions (pure).

A fingerprint is a short hash of what decides how a version folds and decides:

- the bytecode of ``decide``, ``evolve``, ``status``, ``initial`` and
  ``on_cancel`` (when they are functions), and of every function they call by
  a global name defined in the same module (followed transitively), including
  nested functions, lambdas and comprehensions; the names and constants that
  code reads;
- the JSON schema of the state type (``msgspec.json.schema``) and its
  ``state_schema`` number;
- the upcasters (bytecode and ``(type, from_version)``) of the event types
  defined in those same modules, given by the caller.

Not covered: line numbers, comments, docstrings and local variable names (a
change of those alone keeps the fingerprint); code in other modules the
functions call (library code, helpers imported from elsewhere); values read
from module globals that are not functions, and closure variables that are
not functions; the Python version (bytecode differs between versions, so an
interpreter upgrade shows as a change: ``nonstop verify`` tells whether it
matters).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from hashlib import blake2b
from typing import Any

import msgspec

from engine.core.workflow import Workflow

__all__ = ["UpcasterStep", "code_modules", "fingerprint", "short"]

UpcasterStep = tuple[str, int, Callable[..., Any]]
"""``(event type name, from_version, function)``."""


def _function(obj: Any) -> types.FunctionType | None:
    """The Python function behind ``obj`` (a method, a partial), if any."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(obj, types.FunctionType):
            return obj
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif hasattr(obj, "func"):  # functools.partial
            obj = obj.func
        elif hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        else:
            return None
    return None


def _code(h: Any, code: types.CodeType, doc: str | None = None) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_freevars).encode())
    for i, c in enumerate(code.co_consts):
        if isinstance(c, types.CodeType):
            _code(h, c)
        elif not (i == 0 and doc is not None and c == doc):  # the docstring
            h.update(_const(c).encode())


def _const(c: Any) -> str:
    """A constant's text, the same in every process.

    Sets are sorted: their order follows string hashing, which differs
    between processes.
    """
    if isinstance(c, frozenset):
        return "frozenset({" + ", ".join(sorted(_const(x) for x in c)) + "})"
    if isinstance(c, tuple):
        return "(" + ", ".join(_const(x) for x in c) + ",)"
    return repr(c)


def _walk(h: Any, fn: types.FunctionType, module: str, seen: set[int]) -> None:
    if id(fn) in seen:
        return
    seen.add(id(fn))
    h.update(fn.__qualname__.encode())
    _code(h, fn.__code__, fn.__doc__)
    callees: list[Any] = [fn.__globals__.get(n) for n in _names(fn.__code__)]
    callees += [c.cell_contents for c in fn.__closure__ or () if _filled(c)]
    for obj in callees:
        f = _function(obj)
        if f is not None and f.__module__ == module:
            _walk(h, f, module, seen)


def _names(code: types.CodeType) -> list[str]:
    out = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out += _names(c)
    return out


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _parts(wf: Workflow[Any]) -> list[tuple[str, Any]]:
    return [
        ("decide", wf.decide),
        ("evolve", wf.evolve),
        ("status", wf.status),
        ("initial", wf.initial),
        ("on_cancel", wf.on_cancel),
    ]


def code_modules(wf: Workflow[Any]) -> set[str]:
    """The modules whose functions make up ``wf``'s code."""
    out: set[str] = set()
    for _, obj in _parts(wf):
        f = _function(obj)
        if f is not None:
            out.add(f.__module__)
    return out


def fingerprint(wf: Workflow[Any], upcasters: Iterable[UpcasterStep] = ()) -> str:
    """The fingerprint of ``wf``'s code: 16 hex digits (see the module doc).

    Args:
        wf: The workflow version.
        upcasters: The upcaster steps its events are read through.
    """
    h = blake2b(digest_size=8)
    h.update(f"{wf.name}@{wf.version}#{wf.state_schema}".encode())
    for role, obj in _parts(wf):
        h.update(role.encode())
        f = _function(obj)
        if f is not None:
            _walk(h, f, f.__module__, set())
        elif obj is not None:
            h.update(getattr(obj, "__qualname__", type(obj).__qualname__).encode())
    try:
        schema = msgspec.json.encode(msgspec.json.schema(wf.state_type))
    except (TypeError, ValueError):
        schema = repr(wf.state_type).encode()
    h.update(schema)
    for type_name, from_version, fn in sorted(upcasters, key=lambda s: s[:2]):
        h.update(f"{type_name}:{from_version}".encode())
        f = _function(fn)
        if f is not None:
            _walk(h, f, f.__module__, set())
    return h.hexdigest()


def short(fp: str) -> str:
    """The first 8 hex digits, as tables show it ("-" when none is recorded)."""
    return fp[:8] if fp else "-"
