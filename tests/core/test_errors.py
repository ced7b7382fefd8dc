"""The error tree: one module, everything exported, every error picklable."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import engine
from engine.core import errors

_SAMPLE: dict[str, Any] = {
    "str": "x-value",
    "int": 7,
    "int | None": 3,
    "Sequence[str]": ["a@1", "b@2"],
    "list[str]": ["p", "q"],
    "Sequence[tuple[str, int]]": [("i-1", 4), ("i-2", 9)],
    "object": {"command": 1},
    "object | None": {"command": 2},
    "str | None": "i-42",
    "BaseException": ValueError("boom"),
}


def _exported_errors() -> list[type[errors.NonstopError]]:
    out = []
    for name in engine.__all__:
        value = getattr(engine, name)
        if isinstance(value, type) and issubclass(value, errors.NonstopError):
            out.append(value)
    return out


def _build(cls: type[errors.NonstopError]) -> errors.NonstopError:
    """An instance of ``cls`` with every field of its constructor filled in."""
    owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
    if not issubclass(owner, errors.NonstopError):  # the builtin message init
        return cls(f"{cls.__name__}: something precise went wrong; do this")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        value = _SAMPLE[str(p.annotation)]
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return cls(*args, **kwargs)


def test_every_error_of_the_module_is_exported_from_engine() -> None:
    assert set(errors.__all__) <= set(engine.__all__)
    assert {c.__name__ for c in _exported_errors()} == set(errors.__all__)


def test_every_error_class_of_the_project_lives_in_the_one_module() -> None:
    def walk(cls: type[BaseException]) -> list[type[BaseException]]:
        return [cls, *(d for s in cls.__subclasses__() for d in walk(s))]

    import engine.cli
    import engine.commands.deploy
    import engine.kafka
    import engine.testing.plugin
    import engine.testing.scenario
    import engine.testing.stability
    import engine.testing.strategies  # noqa: F401
    import projections  # noqa: F401
    import upcasters.inputs
    import upcasters.testing  # noqa: F401

    stray = [
        f"{c.__module__}.{c.__qualname__}"
        for c in walk(errors.NonstopError)
        if c.__module__ != errors.__name__ and not c.__module__.startswith("tests")
    ]
    assert stray == []


@pytest.mark.parametrize("cls", _exported_errors(), ids=lambda c: c.__name__)
def test_error_pickles_with_its_fields_and_message(
    cls: type[errors.NonstopError],
) -> None:
    err = _build(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__
    assert back.args == err.args


def test_command_rejected_message_is_not_doubled() -> None:
    err = errors.CommandRejected("out of stock", instance_id="o-1", command=None)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == "command rejected by instance 'o-1': out of stock"
    assert back.reason == "out of stock"
    assert back.instance_id == "o-1"


def test_commit_in_doubt_is_a_store_unavailable_that_says_so() -> None:
    err = errors.CommitInDoubt("postgresql://db/x", "connection reset")
    assert isinstance(err, errors.StoreUnavailable)
    assert "may or may not have committed the append" in str(err)
    assert "connection reset" in str(err)
    assert (err.url, err.reason) == ("postgresql://db/x", "connection reset")
