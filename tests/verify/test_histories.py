"""``nonstop export`` -> ``replay_histories``: a roundtrip, and divergences."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from engine import WorkflowRegistry
from engine.cli import main
from engine.core.errors import ReplayDiverged
from engine.testing.histories import History, replay_histories
from tests.verify import flows
from tests.verify.test_cli import APP


def export(
    capsys: pytest.CaptureFixture[str], store: str, out: Path, *argv: str
) -> tuple[int, str]:
    head = ["--store", store, "--app", APP, "export", "account"]
    code = main([*head, "--output", str(out), *argv])
    got = capsys.readouterr()
    return code, got.out + got.err


@pytest.mark.parametrize("raw", [False, True])
def test_roundtrip_and_divergence(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, raw: bool
) -> None:
    out = tmp_path / "h.jsonl"
    code, text = export(capsys, url, out, *(["--raw"] if raw else []))
    assert code == 0 and "wrote 3 histories" in text
    lines = [
        msgspec.json.decode(ln, type=History)
        for ln in out.read_bytes().split(b"\n")
        if ln
    ]
    assert [h.instance_id for h in lines] == ["a1", "a2", "a3"]
    assert all(h.raw is raw for h in lines)
    assert replay_histories(out, flows.registry()) == 3
    refactored = WorkflowRegistry()
    refactored.register(flows.refactor)
    assert replay_histories(out, refactored) == 3
    hotfixed = WorkflowRegistry()
    hotfixed.register(flows.hotfix)
    with pytest.raises(ReplayDiverged) as err:
        replay_histories(out, hotfixed)
    e = err.value
    assert (e.instance_id, e.position, e.event_type) == (
        "a1",
        4,
        "tests.verify.Deposited",
    )
    assert "balance: 505 -> 506" in str(e)
    with pytest.raises(ReplayDiverged, match=r"\(2 histories diverge\)"):
        replay_histories(out, hotfixed, mode="all")


def test_filters(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    out = tmp_path / "h.jsonl"
    code, text = export(capsys, url, out, "--status", "completed")
    assert code == 0 and "wrote 1 histories" in text
    assert b'"a3"' in out.read_bytes()
    code, text = export(capsys, url, out, "--limit", "2", "--version", "1")
    assert code == 0 and "wrote 2 histories" in text
    code, text = export(capsys, url, out, "--version", "2")
    assert code == 0 and "wrote 0 histories" in text
    code, text = export(capsys, url, out, "--status", "sleeping")
    assert code == 2 and "'sleeping'" in text


def test_a_file_edited_by_hand_is_caught(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "h.jsonl"
    export(capsys, url, out)
    text = out.read_text().replace('"amount":7', '"amount":8')
    out.write_text(text)
    with pytest.raises(ReplayDiverged) as err:
        replay_histories(out, flows.registry())
    assert err.value.instance_id == "a2" and err.value.position == 3
