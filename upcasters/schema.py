"""Schema lock and compatibility check, like protobuf's breaking-change checks.

``describe`` turns the registered event types into plain data; ``write_lock``
keeps every schema version ever locked; ``compare`` reports what changed since
the lock, which changes break stored events, and which are safe while old and
new code run side by side (a rolling deploy).

The rule for a fleet running two releases at once: an additive change (a new
field, placed last, with a default, at the same schema version) is safe both
ways, because readers fill in the default and ignore fields they do not know.
Anything else that changes a payload needs a schema bump with an upcaster, and a
two-step release: first deploy code that can *read* the new version (expand),
then code that *writes* it (contract).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from engine.core.errors import SchemaLockError
from upcasters.chain import UpcasterRegistry

if TYPE_CHECKING:  # upcasters.inputs builds on this module
    from upcasters.inputs import InputKind

__all__ = [
    "LOCK_FORMAT",
    "Change",
    "compare",
    "describe",
    "describe_type",
    "merge_lock",
    "read_lock",
    "write_lock",
]

LOCK_FORMAT = 1
Kind = Literal["safe", "mixed-fleet-unsafe", "breaking"]


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def describe_type(cls: type[Any]) -> dict[str, Any]:
    """The fields of a msgspec struct as plain, stable data."""
    fields = []
    for f in msgspec.structs.fields(cls):
        entry: dict[str, Any] = {"name": f.encode_name, "type": _type_name(f.type)}
        if f.required:
            entry["required"] = True
        elif f.default is not msgspec.NODEFAULT:
            entry["default"] = repr(f.default)
        else:
            entry["default"] = f"{_type_name(f.default_factory)}()"
        fields.append(entry)
    config = getattr(cls, "__struct_config__", None)
    out: dict[str, Any] = {"fields": fields}
    if config is not None and config.array_like:
        out["array_like"] = True
    return out


def describe(
    types: Iterable[tuple[str, int, type[Any]]],
    states: Iterable[tuple[str, int, type[Any]]] = (),
    inputs: Iterable[tuple[str, InputKind, type[Any]]] = (),
) -> dict[str, Any]:
    """A lock document for the given event types, state types and input types.

    Args:
        types: ``(type name, current schema, struct class)`` per event type.
        states: ``(workflow@version, state schema, state class)`` per workflow
            version.
        inputs: ``(workflow@version, "start" or "command", class)`` per input
            type a workflow version accepts (:mod:`upcasters.inputs`).
    """
    from upcasters.inputs import describe_inputs

    events = {
        name: {"schema": schema, "versions": {str(schema): describe_type(cls)}}
        for name, schema, cls in sorted(types, key=lambda t: t[0])
    }
    state_docs = {
        ref: {"schema": schema, "versions": {str(schema): describe_type(cls)}}
        for ref, schema, cls in sorted(states, key=lambda t: t[0])
    }
    return {
        "format": LOCK_FORMAT,
        "events": events,
        "states": state_docs,
        "inputs": describe_inputs(inputs),
    }


def merge_lock(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new``, keeping the schema versions only ``old`` knows (history is kept).

    Event types, workflow versions and input types gone from the code are
    dropped: locking is how a removal is accepted (``compare`` reports it until
    then). Inputs have no schema versions: the code's are locked as they are.
    """
    if not old:
        return dict(new)
    merged = {
        "format": LOCK_FORMAT,
        "events": _merge_section(old.get("events", {}), new["events"]),
        "states": _merge_section(old.get("states", {}), new["states"]),
    }
    if "inputs" in new:
        merged["inputs"] = dict(new["inputs"])
    return merged


def _merge_section(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entry in new.items():
        versions = dict(old.get(name, {}).get("versions", {}))
        versions.update(entry["versions"])
        out[name] = {
            "schema": entry["schema"],
            "versions": dict(sorted(versions.items(), key=lambda kv: int(kv[0]))),
        }
    return out


def write_lock(path: Path, doc: Mapping[str, Any]) -> None:
    """Write a lock file: sorted keys, two-space indent, trailing newline."""
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_lock(path: Path) -> dict[str, Any]:
    """Read a lock file.

    Raises:
        SchemaLockError: the file is missing, not JSON, or not a lock document.
    """
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaLockError(
            f"no schema lock at {path}; write one with `nonstop schema lock "
            f"--output {path}` and commit it"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaLockError(f"{path} is not a valid schema lock: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT:
        raise SchemaLockError(
            f"{path} is not a schema lock of format {LOCK_FORMAT}; write it again "
            "with `nonstop schema lock`"
        )
    for section in ("events", "states"):
        entries = doc.get(section, {})
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and "schema" in e and "versions" in e
            for e in entries.values()
        ):
            raise SchemaLockError(
                f"{path}: section {section!r} is malformed (each entry needs "
                "'schema' and 'versions'); write it again with `nonstop schema lock`"
            )
    from upcasters.inputs import valid_inputs

    if "inputs" in doc and not valid_inputs(doc["inputs"]):
        raise SchemaLockError(
            f"{path}: section 'inputs' is malformed (workflow@version -> start and "
            "command types); write it again with `nonstop schema lock`"
        )
    return doc


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the lock and the code."""

    subject: str
    """Event type (``state workflow@version``, ``start workflow@version Type``,
    ``command workflow@version Type``) and field concerned."""
    kind: Kind
    """safe, mixed-fleet-unsafe (needs an expand/contract release) or breaking."""
    message: str
    """What changed and what to do."""

    def __str__(self) -> str:
        return f"[{self.kind}] {self.subject}: {self.message}"


def compare(
    lock: Mapping[str, Any],
    code: Mapping[str, Any],
    upcasters: UpcasterRegistry | None = None,
) -> list[Change]:
    """Differences between a lock and the current code, classified.

    Args:
        lock: A lock document (:func:`read_lock`).
        code: The code's document (:func:`describe`).
        upcasters: Steps and renames that cover schema bumps.
    """
    reg = upcasters if upcasters is not None else UpcasterRegistry()
    changes: list[Change] = []
    locked_events: Mapping[str, Any] = lock.get("events", {})
    code_events: Mapping[str, Any] = code.get("events", {})
    for name, entry in sorted(locked_events.items()):
        target = reg.resolve_name(name)
        if target not in code_events:
            changes.append(
                Change(
                    name,
                    "breaking",
                    "event type vanished from the code; stored events of it can no "
                    "longer be read (keep the class, or rename it with an upcaster "
                    "registry rename_type)",
                )
            )
            continue
        if target != name:
            changes.append(
                Change(name, "safe", f"renamed to {target!r}; covered by rename_type")
            )
        changes.extend(_compare_event(target, entry, code_events[target], reg))
    for name in sorted(set(code_events) - set(locked_events)):
        if name not in reg.renames().values():
            changes.append(Change(name, "safe", "new event type"))
    changes.extend(_compare_states(lock.get("states", {}), code.get("states", {}), reg))
    from upcasters.inputs import compare_inputs

    changes.extend(compare_inputs(lock.get("inputs"), code.get("inputs", {})))
    return changes


def _compare_states(
    locked: Mapping[str, Any], code: Mapping[str, Any], reg: UpcasterRegistry
) -> list[Change]:
    """Snapshot states: only ever a cost (a rebuild), except a vanished version."""
    out: list[Change] = []
    for ref in sorted(set(locked) - set(code)):
        out.append(
            Change(
                f"state {ref}",
                "breaking",
                "workflow version vanished from the code; instances pinned to it "
                "can no longer be loaded (keep it registered until they are done)",
            )
        )
    for ref, now in sorted(code.items()):
        old = locked.get(ref)
        if old is None:
            continue
        before, after = int(old["schema"]), int(now["schema"])
        subject = f"state {ref}"
        if after < before:
            out.append(
                Change(
                    subject,
                    "breaking",
                    f"state_schema went back from {before} to {after}; bump it "
                    "forward instead",
                )
            )
        elif after == before:
            if old["versions"].get(str(before)) != now["versions"][str(after)]:
                out.append(
                    Change(
                        subject,
                        "breaking",
                        f"state type changed shape at state_schema {after}; bump "
                        "Workflow.state_schema (and register a state upcaster, or "
                        "let old snapshots be rebuilt from events)",
                    )
                )
        elif reg.can_upcast_state(ref, before, after):
            out.append(
                Change(
                    subject,
                    "safe",
                    f"state_schema {before} -> {after}, covered by state upcasters: "
                    "old snapshots are upcast on load",
                )
            )
        else:
            out.append(
                Change(
                    subject,
                    "safe",
                    f"state_schema {before} -> {after} without state upcasters: old "
                    "snapshots are ignored and rebuilt from events; run `nonstop "
                    "snapshots migrate` after the deploy",
                )
            )
    return out


def _compare_event(
    name: str, locked: Mapping[str, Any], now: Mapping[str, Any], reg: UpcasterRegistry
) -> list[Change]:
    old_schema = int(locked["schema"])
    new_schema = int(now["schema"])
    if new_schema < old_schema:
        return [
            Change(
                name,
                "breaking",
                f"schema went back from {old_schema} to {new_schema}; events stored "
                f"at {old_schema} could not be read",
            )
        ]
    if new_schema > old_schema:
        steps = set(reg.steps(name))
        missing = [v for v in range(old_schema, new_schema) if v not in steps]
        if missing:
            shown = ", ".join(f"{v}->{v + 1}" for v in missing)
            return [
                Change(
                    name,
                    "breaking",
                    f"schema bumped {old_schema} -> {new_schema} without an "
                    f"upcaster for {shown}",
                )
            ]
        return [
            Change(
                name,
                "mixed-fleet-unsafe",
                f"schema bumped {old_schema} -> {new_schema}, covered by upcasters; "
                "old releases cannot read the new version: release in two steps "
                "(deploy the reader with the upcaster first, then start writing it)",
            )
        ]
    return _compare_fields(
        name,
        locked["versions"][str(old_schema)],
        now["versions"][str(new_schema)],
    )


FieldChange = tuple[str, str, str]
"""``(field, what, detail)``: one field difference, as :func:`_field_changes` finds."""

_EVENT_TEXT: dict[str, tuple[Kind, str]] = {
    "removed": (
        "breaking",
        "field removed (or renamed) at the same schema version; bump the schema "
        "and register an upcaster (rename_field for a rename)",
    ),
    "retyped": (
        "breaking",
        "type changed from {detail}; never retype a field: add a new one, or bump "
        "the schema with an upcaster",
    ),
    "lost-default": (
        "breaking",
        "field lost its default; events stored without it cannot be read",
    ),
    "new-required": (
        "breaking",
        "new field without a default; events stored before it cannot be read. Give "
        "it a default, or bump the schema with an upcaster that derives it",
    ),
    "inserted": (
        "breaking",
        "new field inserted before existing ones in an array-like struct; add new "
        "fields last",
    ),
    "new-default": (
        "safe",
        "new field with a default: old readers ignore it, new readers fill the "
        "default in (safe for a mixed fleet)",
    ),
}


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    """What changed field by field between two struct descriptions."""
    out: list[FieldChange] = []
    old_fields = {f["name"]: f for f in old["fields"]}
    new_fields = {f["name"]: f for f in new["fields"]}
    for fname, f in old_fields.items():
        if fname not in new_fields:
            out.append((fname, "removed", ""))
        elif new_fields[fname]["type"] != f["type"]:
            out.append(
                (fname, "retyped", f"{f['type']} to {new_fields[fname]['type']}")
            )
        elif new_fields[fname].get("required") and not f.get("required"):
            out.append((fname, "lost-default", ""))
    for position, (fname, f) in enumerate(new_fields.items()):
        if fname in old_fields:
            continue
        if f.get("required"):
            out.append((fname, "new-required", ""))
        elif new.get("array_like") and position < len(old_fields):
            out.append((fname, "inserted", ""))
        else:
            out.append((fname, "new-default", ""))
    return out


def _compare_fields(
    name: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    texts: Mapping[str, tuple[Kind, str]] = _EVENT_TEXT,
) -> list[Change]:
    out: list[Change] = []
    for fname, what, detail in _field_changes(old, new):
        kind, text = texts[what]
        out.append(Change(f"{name}.{fname}", kind, text.format(detail=detail)))
    return out
