"""Upcaster registration and chains: old event payloads into the current schema.

An upcaster is a pure function from schema version N of an event type to N+1,
payload (a plain dict) in, payload out. Stored events are never rewritten: the
chain runs every time an old event is read.

Besides one-step changes, a chain can rename a type (events stored under the
old name are read as the new one), split one stored event into several, or
drop it.

Snapshot states evolve the same way: a *state upcaster* turns the state of a
workflow version (``name@version``) saved at state schema N into N+1. A
snapshot no chain can bring up to date is ignored and rebuilt from events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from engine.core.errors import UpcastChainError

__all__ = [
    "Emit",
    "UpcastResult",
    "Upcaster",
    "UpcasterRegistry",
    "default_upcasters",
    "state_upcaster",
    "upcaster",
]

Payload: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Emit:
    """One event produced by a splitting upcaster."""

    type: str
    """Type name of the produced event."""
    payload: Payload
    """Its payload."""
    schema: int
    """The schema version ``payload`` is at; the chain continues from there."""


UpcastResult: TypeAlias = Payload | Sequence[Emit]
"""A dict (the same type at N+1), or a list of :class:`Emit` (split; empty drops)."""


@dataclass(frozen=True, slots=True)
class Upcaster:
    """A registered step."""

    type: str
    """Event type name it reads."""
    from_version: int
    """Schema version it reads; it produces ``from_version + 1``."""
    fn: Callable[[Payload], UpcastResult]
    """The pure function."""


@dataclass
class UpcasterRegistry:
    """Holds upcasters and type renames, checks chains, and runs them."""

    _steps: dict[tuple[str, int], Upcaster] = field(default_factory=dict)
    _renames: dict[str, str] = field(default_factory=dict)
    _state_steps: dict[tuple[str, int], Callable[[Payload], Payload]] = field(
        default_factory=dict
    )

    def add(
        self, type_name: str, from_version: int, fn: Callable[[Payload], UpcastResult]
    ) -> None:
        """Register ``fn`` as the step from ``type_name`` schema N to N+1.

        Raises:
            UpcastChainError: ``from_version`` < 1, or a step is already there.
        """
        if from_version < 1:
            raise UpcastChainError(
                f"upcaster for {type_name!r}: from_version={from_version} must be >= 1"
            )
        key = (type_name, from_version)
        known = self._steps.get(key)
        if known is not None and known.fn is not fn:
            raise UpcastChainError(
                f"two upcasters for {type_name!r} schema {from_version} -> "
                f"{from_version + 1}: {_name(known.fn)} and {_name(fn)}; keep one"
            )
        self._steps[key] = Upcaster(type_name, from_version, fn)

    def upcaster(
        self, type_name: str, *, from_version: int
    ) -> Callable[
        [Callable[[Payload], UpcastResult]], Callable[[Payload], UpcastResult]
    ]:
        """Decorator form of :meth:`add`.

        Example:
            >>> @registry.upcaster("OrderPlaced", from_version=1)
            ... def add_currency(p):
            ...     return {**p, "currency": "EUR"}
        """

        def wrap(
            fn: Callable[[Payload], UpcastResult],
        ) -> Callable[[Payload], UpcastResult]:
            self.add(type_name, from_version, fn)
            return fn

        return wrap

    def rename_type(self, old: str, new: str) -> None:
        """Read events stored as ``old`` as ``new`` (at the same schema version).

        Raises:
            UpcastChainError: ``old`` is already renamed to something else, or the
                rename would loop.
        """
        if self._renames.get(old, new) != new:
            raise UpcastChainError(
                f"event type {old!r} is already renamed to {self._renames[old]!r}"
            )
        seen = {old}
        target = new
        while target in self._renames:
            if target in seen:
                raise UpcastChainError(f"renaming {old!r} to {new!r} makes a loop")
            seen.add(target)
            target = self._renames[target]
        if target == old:
            raise UpcastChainError(f"renaming {old!r} to {new!r} makes a loop")
        self._renames[old] = new

    def rename_field(
        self, type_name: str, *, from_version: int, old: str, new: str
    ) -> None:
        """Register a step that renames one field of ``type_name``."""

        def rename(payload: Payload) -> Payload:
            out = {k: v for k, v in payload.items() if k != old}
            if old in payload:
                out[new] = payload[old]
            return out

        rename.__qualname__ = f"rename_field({type_name}.{old}->{new})"
        self.add(type_name, from_version, rename)

    def steps(self, type_name: str) -> list[int]:
        """The ``from_version`` of every step registered for ``type_name``."""
        return sorted(v for (t, v) in self._steps if t == type_name)

    def all_steps(self) -> list[Upcaster]:
        """Every registered step, by type name and schema version."""
        return [self._steps[k] for k in sorted(self._steps)]

    def steps_count(self) -> int:
        """How many steps are registered, over all types."""
        return len(self._steps)

    def renames(self) -> dict[str, str]:
        """Old type name -> new type name."""
        return dict(self._renames)

    def check(self, current: Mapping[str, int]) -> None:
        """Check every chain against the current schema versions.

        Args:
            current: Registered type name -> current schema version.

        Raises:
            UpcastChainError: a chain has a gap, misses steps up to the current
                version, goes past it, or a type (or rename target) is unknown.
                The message lists every problem found.
        """
        problems: list[str] = []
        for old, new in sorted(self._renames.items()):
            if old in current:
                problems.append(
                    f"{old!r} is renamed to {new!r} but is still registered as an "
                    "event type; unregister the old class"
                )
            if self.resolve_name(old) not in current:
                problems.append(f"rename {old!r} -> {new!r}: {new!r} is not registered")
        types = {t for (t, _) in self._steps} | set(current)
        for name in sorted(types):
            versions = self.steps(name)
            head = current.get(name)
            if head is None:
                if name not in self._renames:
                    problems.append(
                        f"upcasters for {name!r} (from {versions}) but no such event "
                        "type is registered (register it, or rename it)"
                    )
                continue
            if versions and versions[-1] >= head:
                problems.append(
                    f"{name!r}: an upcaster reads schema {versions[-1]}, but the "
                    f"current schema is {head}; bump the schema or remove the step"
                )
            missing = [v for v in range(1, head) if v not in versions]
            if missing:
                shown = ", ".join(f"{v}->{v + 1}" for v in missing)
                problems.append(
                    f"{name!r} is at schema {head} but has no upcaster for {shown}; "
                    "events stored at those versions could not be read"
                )
        if problems:
            raise UpcastChainError("; ".join(problems))

    def add_state(
        self, workflow: str, from_version: int, fn: Callable[[Payload], Payload]
    ) -> None:
        """Register ``fn`` as the step of ``workflow``'s state from schema N to N+1.

        Args:
            workflow: ``name@version`` whose snapshots it reads.
            from_version: The state schema it reads (``Workflow.state_schema``).
            fn: Pure function, state as plain data in, plain data out.

        Raises:
            UpcastChainError: ``workflow`` is not ``name@version``,
                ``from_version`` < 1, or a step is already there.
        """
        if "@" not in workflow:
            raise UpcastChainError(
                f"state upcaster for {workflow!r}: name the workflow version as "
                "name@version (a version's state is what a snapshot holds)"
            )
        if from_version < 1:
            raise UpcastChainError(
                f"state upcaster for {workflow!r}: from_version={from_version} "
                "must be >= 1"
            )
        known = self._state_steps.get((workflow, from_version))
        if known is not None and known is not fn:
            raise UpcastChainError(
                f"two state upcasters for {workflow!r} schema {from_version} -> "
                f"{from_version + 1}: {_name(known)} and {_name(fn)}; keep one"
            )
        self._state_steps[(workflow, from_version)] = fn

    def state_upcaster(
        self, workflow: str, *, from_version: int
    ) -> Callable[[Callable[[Payload], Payload]], Callable[[Payload], Payload]]:
        """Decorator form of :meth:`add_state`."""

        def wrap(fn: Callable[[Payload], Payload]) -> Callable[[Payload], Payload]:
            self.add_state(workflow, from_version, fn)
            return fn

        return wrap

    def state_steps(self, workflow: str) -> list[int]:
        """The ``from_version`` of every state step of ``workflow`` (name@version)."""
        return sorted(v for (w, v) in self._state_steps if w == workflow)

    def check_states(self, current: Mapping[str, int]) -> None:
        """Check the state chains of the workflow versions in ``current``.

        A version without any state step is fine (its old snapshots are rebuilt
        from events); a chain that exists must reach the current state schema
        without a gap, and must not read a schema at or past it.

        Args:
            current: ``name@version`` -> its ``state_schema``.

        Raises:
            UpcastChainError: naming every inconsistent chain.
        """
        problems: list[str] = []
        for ref, head in sorted(current.items()):
            versions = self.state_steps(ref)
            if not versions:
                continue
            if versions[-1] >= head:
                problems.append(
                    f"state of {ref!r}: an upcaster reads schema {versions[-1]}, but "
                    f"the current state_schema is {head}; bump it or remove the step"
                )
                continue
            missing = [v for v in range(versions[0], head) if v not in versions]
            if missing:
                shown = ", ".join(f"{v}->{v + 1}" for v in missing)
                problems.append(
                    f"state of {ref!r} is at schema {head} but has no upcaster for "
                    f"{shown}; register it, or remove the chain to rebuild old "
                    "snapshots from events"
                )
        if problems:
            raise UpcastChainError("; ".join(problems))

    def can_upcast_state(self, workflow: str, schema: int, head: int) -> bool:
        """True when a state saved at ``schema`` can be brought to ``head``."""
        return schema <= head and all(
            (workflow, v) in self._state_steps for v in range(schema, head)
        )

    def upcast_state(
        self, workflow: str, schema: int, payload: Payload, head: int
    ) -> Payload:
        """Bring a snapshot state of ``workflow`` from ``schema`` to ``head``.

        Raises:
            UpcastChainError: a step is missing, or one returned something other
                than a dict.
        """
        data = payload
        for version in range(schema, head):
            step = self._state_steps.get((workflow, version))
            if step is None:
                raise UpcastChainError(
                    f"no state upcaster for {workflow!r} schema {version} -> "
                    f"{version + 1}"
                )
            data = step(data)
            if not isinstance(data, dict):
                raise UpcastChainError(
                    f"state upcaster {_name(step)} for {workflow!r} schema "
                    f"{version} returned {type(data).__name__}; return a dict"
                )
        return data

    def resolve_name(self, name: str) -> str:
        """Follow renames from a stored type name to the current one."""
        while name in self._renames:
            name = self._renames[name]
        return name

    def compile(
        self, current: Mapping[str, int]
    ) -> Callable[[str, int, Payload], list[tuple[str, Payload]]]:
        """:meth:`upcast` bound to ``current``, with each chain planned once.

        The returned function looks the steps of a stored ``(type, schema)`` up
        the first time it meets it and then just calls them in a row; a step
        that splits or drops an event hands the payload to :meth:`upcast`
        (upcasters are pure, so running the chain again is harmless).
        """
        current = dict(current)
        plans: dict[tuple[str, int], tuple[str, tuple[Callable[..., Any], ...]]] = {}
        upcast = self.upcast

        def run(
            type_name: str, schema: int, payload: Payload
        ) -> list[tuple[str, Payload]]:
            plan = plans.get((type_name, schema))
            if plan is None:
                found = self.plan(type_name, schema, current)
                if found is None:
                    return upcast(type_name, schema, payload, current)
                plan = plans[(type_name, schema)] = found
            name, fns = plan
            data: Any = payload
            for fn in fns:
                data = fn(data)
                if type(data) is not dict:
                    return upcast(type_name, schema, payload, current)
            return [(name, data)]

        return run

    def plan(
        self, type_name: str, schema: int, current: Mapping[str, int]
    ) -> tuple[str, tuple[Callable[..., Any], ...]] | None:
        """The current name and the steps of a stored ``(type, schema)``, in order.

        None when the chain is broken (:meth:`upcast` then says why). The steps
        may still split or drop the event: callers check that each returns a
        dict.
        """
        name = self.resolve_name(type_name)
        head = current.get(name)
        if head is None or schema > head:
            return None
        steps = [self._steps.get((name, v)) for v in range(schema, head)]
        if any(step is None for step in steps):
            return None
        return name, tuple(step.fn for step in steps if step is not None)

    def upcast(
        self, type_name: str, schema: int, payload: Payload, current: Mapping[str, int]
    ) -> list[tuple[str, Payload]]:
        """Bring one stored payload to the current schema of its (renamed) type.

        Returns:
            ``(type name, payload)`` pairs at their current schema: one for a plain
            chain, several after a split, none when dropped.

        Raises:
            UpcastChainError: a step is missing or an upcaster returned the wrong
                kind of value.
        """
        out: list[tuple[str, Payload]] = []
        work: list[tuple[str, int, Payload]] = [(type_name, schema, payload)]
        while work:
            name, version, data = work.pop()
            name = self.resolve_name(name)
            head = current.get(name)
            if head is None:
                raise UpcastChainError(f"event type {name!r} is not registered")
            while version < head:
                step = self._steps.get((name, version))
                if step is None:
                    raise UpcastChainError(
                        f"no upcaster for {name!r} schema {version} -> {version + 1}"
                    )
                result = step.fn(data)
                if isinstance(result, dict):
                    data = result
                    version += 1
                    continue
                if not isinstance(result, Sequence) or not all(
                    isinstance(e, Emit) for e in result
                ):
                    raise UpcastChainError(
                        f"upcaster {_name(step.fn)} for {name!r} schema {version} "
                        f"returned {type(result).__name__}; return a dict or a list "
                        "of Emit"
                    )
                work.extend((e.type, e.schema, e.payload) for e in reversed(result))
                break
            else:
                if version > head:
                    raise UpcastChainError(
                        f"stored {name!r} has schema {version}, newer than the "
                        f"current {head}: this code is older than the writer"
                    )
                out.append((name, data))
        return out


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


_default = UpcasterRegistry()


def default_upcasters() -> UpcasterRegistry:
    """The process-wide registry that :func:`upcaster` writes to."""
    return _default


def upcaster(
    type_name: str, *, from_version: int, registry: UpcasterRegistry | None = None
) -> Callable[[Callable[[Payload], UpcastResult]], Callable[[Payload], UpcastResult]]:
    """Register a step from schema ``from_version`` of ``type_name`` to the next.

    Example:
        >>> @upcaster("OrderPlaced", from_version=1)
        ... def add_currency(payload):
        ...     return {**payload, "currency": "EUR"}
    """
    return (registry if registry is not None else _default).upcaster(
        type_name, from_version=from_version
    )


def state_upcaster(
    workflow: str, *, from_version: int, registry: UpcasterRegistry | None = None
) -> Callable[[Callable[[Payload], Payload]], Callable[[Payload], Payload]]:
    """Register a step of ``workflow``'s snapshot state from one schema to the next.

    Example:
        >>> @state_upcaster("orders@2", from_version=1)
        ... def add_currency(state):
        ...     return {**state, "currency": "EUR"}
    """
    return (registry if registry is not None else _default).state_upcaster(
        workflow, from_version=from_version
    )
