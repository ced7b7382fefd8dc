"""Typed configuration documents: parse, decode, validate, compare (pure).

A workflow declares its configuration as a ``msgspec.Struct`` with defaults and
``msgspec.Meta`` bounds (``Workflow(config=MyConfig)``); cross-field rules go
in an optional ``validate(self) -> list[str]`` method of that struct, which
returns the problems it finds (empty when the document is fine). A document is
a TOML table or a JSON object; it is stored as canonical JSON (sorted keys) and
decoded by each engine with its own code's type, so a field one version does
not know is refused by that version rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from engine.core.errors import ConfigError

__all__ = [
    "CONFIG_KEY",
    "ConfigFormat",
    "ConfigReader",
    "canonical",
    "decode_config",
    "diff_documents",
    "parse_document",
]

CONFIG_KEY = "@config"
"""The name a pinned config version is recorded under among an instance's
flag values (flag names cannot start with ``@``)."""

ConfigFormat = Literal["toml", "json"]

ConfigReader = Callable[[int | None], tuple[int, Any]]
"""``reader(version)`` gives ``(version, typed config)``: with None, the
version this instance gets now (latest or canary, the last good one this
engine can decode); with a number, that version. Version 0 is the type's
defaults (no document set yet)."""


def parse_document(data: bytes, fmt: ConfigFormat, *, source: str) -> dict[str, Any]:
    """Parse a TOML or JSON document into a table (no type applied yet).

    Raises:
        ConfigError: it does not parse, or its top level is not a table/object.
    """
    try:
        decode = msgspec.toml.decode if fmt == "toml" else msgspec.json.decode
        doc = decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{source}: not valid {fmt.upper()} ({exc}); fix the syntax and retry"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: the document is a {type(doc).__name__}, not a "
            f"{'table' if fmt == 'toml' else 'JSON object'} of fields"
        )
    return doc


def canonical(document: dict[str, Any]) -> bytes:
    """The stored form of a document: JSON with sorted keys."""
    return msgspec.json.encode(document, order="sorted")


def decode_config(config_type: type[Any], document: bytes | dict[str, Any]) -> Any:
    """Decode a document with ``config_type`` and run its ``validate`` rules.

    Raises:
        ConfigError: an unknown field, a wrong type, a value out of bounds or
            a broken rule; the message names the field (``$.path``).
    """
    doc = msgspec.json.decode(document) if isinstance(document, bytes) else document
    if not isinstance(doc, dict):
        raise ConfigError(f"the document is a {type(doc).__name__}, not a table")
    _check_fields(msgspec.inspect.type_info(config_type), doc, "$")
    try:
        cfg = msgspec.convert(doc, type=config_type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{exc}") from None
    rules = getattr(cfg, "validate", None)
    if callable(rules):
        problems = [str(p) for p in rules()]
        if problems:
            raise ConfigError("; ".join(problems))
    return cfg


def _check_fields(info: msgspec.inspect.Type, doc: Any, path: str) -> None:
    """Refuse fields the struct does not declare, at any depth of structs."""
    if not isinstance(info, msgspec.inspect.StructType) or not isinstance(doc, dict):
        return
    known = {f.encode_name: f for f in info.fields}
    for key, value in doc.items():
        field = known.get(key)
        if field is None:
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"unknown field `{path}.{key}` (the config type "
                f"{info.cls.__name__} has: {names})"
            )
        _check_fields(field.type, value, f"{path}.{key}")


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two documents, one ``path: old -> new`` per field."""
    out: list[str] = []
    _diff(old, new, "", out)
    return out


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: (unset) -> {_show(new[key])}")
            elif key not in new:
                out.append(f"{sub}: {_show(old[key])} -> (unset)")
            else:
                _diff(old[key], new[key], sub, out)
    elif old != new:
        out.append(f"{path or '$'}: {_show(old)} -> {_show(new)}")


def _show(value: Any) -> str:
    return msgspec.json.encode(value).decode()
