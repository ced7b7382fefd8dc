"""Hypothesis strategies for a workflow's inputs, built from their msgspec types.

:func:`values` draws instances of any type msgspec can decode, following
msgspec's own view of it (``msgspec.inspect``), so a constraint written as
``Annotated[int, msgspec.Meta(ge=1)]`` is respected and integers stay within
what msgspec encodes. :func:`commands` draws a start input and then a list of
commands for a workflow from the types it accepts
(:func:`engine.core.inputs.start_types` and :func:`~engine.core.inputs.command_types`).
Any type can be given its own strategy in ``overrides``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as mi

from engine.core.errors import UnsupportedFieldType, WorkflowDefinitionError
from engine.core.extras import require
from engine.core.inputs import command_types, start_types
from engine.core.workflow import Workflow

require("hypothesis", "testing", "engine.testing")

from hypothesis import strategies as st  # noqa: E402

__all__ = ["Overrides", "commands", "values"]

Overrides = Mapping[
    type[Any], st.SearchStrategy[Any] | Mapping[str, st.SearchStrategy[Any]]
]
"""Per type, wherever it appears (nested too): a strategy for the whole value,
or, for a struct, strategies for some of its fields by name (the others are
drawn from their types)."""

_INT64 = (-(2**63), 2**63 - 1)
_PYTHON: dict[type[mi.Type], type[Any]] = {
    mi.IntType: int,
    mi.FloatType: float,
    mi.StrType: str,
    mi.BoolType: bool,
    mi.BytesType: bytes,
    mi.DateTimeType: dt.datetime,
    mi.DateType: dt.date,
    mi.TimeType: dt.time,
    mi.UUIDType: uuid.UUID,
    mi.DecimalType: decimal.Decimal,
}
"""The Python type of each msgspec leaf, so that ``overrides`` can name it."""


def values(tp: Any, *, overrides: Overrides | None = None) -> st.SearchStrategy[Any]:
    """Values of ``tp`` (a msgspec struct, or any type msgspec decodes).

    Raises:
        UnsupportedFieldType: a type within ``tp`` has no strategy here and
            ``overrides`` gives none (the message names it).
    """
    given = dict(overrides or {})
    return _node(mi.type_info(tp), given, repr(tp))


def commands(
    workflow: Workflow[Any],
    *,
    overrides: Overrides | None = None,
    max_commands: int = 8,
) -> st.SearchStrategy[list[Any]]:
    """A start input followed by up to ``max_commands`` commands for ``workflow``.

    Raises:
        WorkflowDefinitionError: the workflow names no start input or command
            types (``Workflow(inputs=..., commands=...)``).
    """
    starts, sends = start_types(workflow), command_types(workflow)
    if not starts or not sends:
        raise WorkflowDefinitionError(
            f"{workflow.ref} names no {'start input' if not starts else 'command'} "
            "types to draw from: pass Workflow(inputs=(...), commands=(...)), or "
            "annotate decide's command parameter with the union of them"
        )
    first = st.one_of(*[values(t, overrides=overrides) for t in starts])
    rest = st.one_of(*[values(t, overrides=overrides) for t in sends])
    return st.tuples(first, st.lists(rest, max_size=max_commands)).map(
        lambda drawn: [drawn[0], *drawn[1]]
    )


def _node(
    t: mi.Type, given: dict[type[Any], Any], where: str
) -> st.SearchStrategy[Any]:
    cls = getattr(t, "cls", _PYTHON.get(type(t)))
    if isinstance(cls, type) and cls in given:
        override = given[cls]
        if isinstance(override, st.SearchStrategy):
            return override
        if not isinstance(t, mi.StructType):
            raise UnsupportedFieldType(
                f"overrides for {cls.__name__} name fields, but it is not a struct; "
                "give a strategy for the whole value"
            )
    if isinstance(t, mi.StructType):
        return _struct(t, given, where)
    if isinstance(t, mi.UnionType):
        return st.one_of(*[_node(m, given, where) for m in t.types])
    leaf = _leaf(t)
    if leaf is not None:
        return leaf
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        items = st.lists(
            _node(t.item_type, given, where),
            min_size=t.min_length or 0,
            max_size=min(t.max_length if t.max_length is not None else 5, 5),
            unique_by=_key if isinstance(t, (mi.SetType, mi.FrozenSetType)) else None,
        )
        kind = {mi.VarTupleType: tuple, mi.SetType: set, mi.FrozenSetType: frozenset}
        return items.map(kind.get(type(t), list))
    if isinstance(t, mi.TupleType):
        return st.tuples(*[_node(i, given, where) for i in t.item_types])
    if isinstance(t, mi.DictType):
        return st.dictionaries(
            _node(t.key_type, given, where),
            _node(t.value_type, given, where),
            min_size=t.min_length or 0,
            max_size=min(t.max_length if t.max_length is not None else 5, 5),
        )
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    what = cls.__name__ if isinstance(cls, type) else type(t).__name__
    raise UnsupportedFieldType(
        f"no built-in strategy for {what} in {where}; pass "
        f"overrides={{{what}: <strategy>}}"
    )


def _leaf(t: mi.Type) -> st.SearchStrategy[Any] | None:
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        ints = st.integers(
            low if low is not None else _INT64[0],
            high if high is not None else _INT64[1],
        )
        step = t.multiple_of
        return ints.filter(lambda n: n % step == 0) if step else ints
    if isinstance(t, mi.FloatType):
        return st.floats(
            min_value=t.ge if t.ge is not None else t.gt,
            max_value=t.le if t.le is not None else t.lt,
            exclude_min=t.ge is None and t.gt is not None,
            exclude_max=t.le is None and t.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return st.from_regex(t.pattern, fullmatch=True)
        return st.text(min_size=t.min_length or 0, max_size=t.max_length or 20)
    if isinstance(t, mi.DateTimeType):  # tz False: naive only; None: either
        zones = st.none() if t.tz is False else st.just(dt.UTC)
        return st.datetimes(timezones=zones)
    if isinstance(t, (mi.BytesType, mi.ByteArrayType)):
        return st.binary(min_size=t.min_length or 0, max_size=t.max_length or 20)
    simple: dict[type[mi.Type], st.SearchStrategy[Any]] = {
        mi.BoolType: st.booleans(),
        mi.NoneType: st.none(),
        mi.AnyType: st.none()
        | st.booleans()
        | st.integers(*_INT64)
        | st.text(max_size=10),
        mi.UUIDType: st.uuids(),
        mi.DateType: st.dates(),
        mi.DecimalType: st.decimals(allow_nan=False, allow_infinity=False),
        mi.TimeType: st.times(),
    }
    return simple.get(type(t))


def _struct(
    t: mi.StructType, given: dict[type[Any], Any], where: str
) -> st.SearchStrategy[Any]:
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    fields: Mapping[str, st.SearchStrategy[Any]] = given.get(t.cls, {})
    unknown = set(fields) - {f.name for f in t.fields}
    if unknown:
        raise UnsupportedFieldType(
            f"overrides name fields {', '.join(sorted(unknown))} that "
            f"{t.cls.__name__} does not have"
        )
    for f in t.fields:
        where_f = f"{t.cls.__name__}.{f.name} of {where}"
        part = fields[f.name] if f.name in fields else _node(f.type, given, where_f)
        (required if f.required else optional)[f.name] = part
    cls = t.cls
    return st.fixed_dictionaries(required, optional=optional).map(
        lambda kwargs: cls(**kwargs)
    )


def _key(value: Any) -> Any:
    return msgspec.msgpack.encode(value)
