"""Config documents: precise refusals, diffs, and what ctx.config records."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ConfigError, Context, WorkflowDefinitionError
from engine.core.config import (
    CONFIG_KEY,
    canonical,
    decode_config,
    diff_documents,
    parse_document,
)
from tests.deploy.configflows import Limits, LimitsV2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"threshold": "high"}, r"Expected `int`, got `str` - at `\$.threshold`"),
        ({"threshold": -1}, r"Expected `int` >= 0 - at `\$.threshold`"),
        ({"threshold": 10**7}, r"Expected `int` <= 1000000 - at `\$.threshold`"),
        ({"treshold": 5}, r"unknown field `\$.treshold` \(the config type Limits"),
        (
            {"countries": ["FR", 3]},
            r"Expected `str`, got `int` - at `\$.countries\[1\]`",
        ),
        ({"countries": ["FR", "FR"]}, r"countries \['FR', 'FR'\] must not repeat"),
    ],
)
def test_invalid_documents_name_the_field(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        decode_config(Limits, document)


def test_nested_unknown_fields_are_refused_with_their_path() -> None:
    with pytest.raises(ConfigError, match=r"unknown field `\$.review.abvoe`"):
        decode_config(LimitsV2, {"review": {"abvoe": 3}})
    assert decode_config(LimitsV2, {"review": {"above": 3}}).review.above == 3


def test_unparsable_documents_are_refused_with_the_source() -> None:
    with pytest.raises(ConfigError, match=r"cfg.toml: not valid TOML"):
        parse_document(b"threshold = [", "toml", source="cfg.toml")
    with pytest.raises(ConfigError, match=r"cfg.json: not valid JSON"):
        parse_document(b'{"threshold": }', "json", source="cfg.json")
    with pytest.raises(ConfigError, match=r"cfg.json: the document is a list"):
        parse_document(b"[1]", "json", source="cfg.json")
    assert parse_document(b"threshold = 5", "toml", source="x") == {"threshold": 5}


def test_defaults_fill_what_a_document_leaves_out() -> None:
    assert decode_config(Limits, {}) == Limits()
    assert decode_config(Limits, canonical({"threshold": 7})).threshold == 7


documents = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(
        st.integers(), st.dictionaries(st.sampled_from(["x", "y"]), st.integers())
    ),
)


@given(old=documents, new=documents)
def test_the_diff_is_empty_exactly_when_the_documents_are_equal(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert (diff_documents(old, new) == []) == (old == new)


def test_diff_names_each_changed_path() -> None:
    assert diff_documents({"t": 1, "n": {"a": 1}}, {"t": 2, "n": {"a": 1, "b": 2}}) == [
        "n.b: (unset) -> 2",
        "t: 1 -> 2",
    ]


def _reader(versions: dict[int, int], now: list[int]) -> Any:
    def read(version: int | None) -> tuple[int, Any]:
        v = now[0] if version is None else version
        return v, Limits(threshold=versions[v])

    return read


def test_config_is_pinned_and_config_latest_is_recorded_per_read() -> None:
    now = [1]
    reader = _reader({0: 100, 1: 10, 2: 20}, now)
    ctx = Context("i", "gate@1", configs=reader)
    assert ctx.config.threshold == 10
    now[0] = 2
    assert ctx.config.threshold == 10  # pinned at the first read
    assert ctx.config_latest.threshold == 20
    assert ctx.recorded == [["flag", [CONFIG_KEY, 1]], ["config", 2]]
    assert ctx.pinned == {CONFIG_KEY: 1}
    # A later decision of the instance starts from its pinned values.
    later = Context("i", "gate@1", configs=reader, pinned=ctx.pinned)
    assert later.config.threshold == 10 and later.recorded == []
    # Replaying the recorded reads gives the same values whatever is current.
    now[0] = 0
    again = Context("i", "gate@1", configs=reader, replay=ctx.recorded)
    assert again.config.threshold == 10 and again.config_latest.threshold == 20


def test_a_workflow_without_a_config_type_is_told_how_to_declare_one() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"Workflow\(config=MyConfig\)"):
        _ = Context("i", "w@1").config


def test_live_flag_reads_follow_the_flag_and_are_recorded_each_time() -> None:
    value = [True]
    ctx = Context("i", "w@1", flags=lambda kind, name, default: value[0])
    assert ctx.flag("f", live=True) is True
    value[0] = False
    assert ctx.flag("f", live=True) is False
    assert ctx.recorded == [["live", ["f", True]], ["live", ["f", False]]]
    assert ctx.pinned == {}
    again = Context("i", "w@1", replay=ctx.recorded)
    assert again.flag("f", live=True) is True and again.flag("f", live=True) is False
