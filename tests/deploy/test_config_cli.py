"""``nonstop config ...`` and ``flags rollback``: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import SyncEngine
from engine.cli import main
from tests.deploy import configflows as cf

APP = "tests.deploy.configflows:registry"
SRC = "tests.deploy.configflows"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'config.db'}"


def nonstop(
    capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str, str]:
    code = main(["--store", url, "--app", APP, *argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_set_refuse_show_history_rollback(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    for v in ("1", "2"):
        assert (
            nonstop(capsys, url, "deploy", "gate", v, "--source", f"{SRC}:v{v}")[0] == 0
        )
    ok = _file(tmp_path, "ok.toml", 'threshold = 40\ncountries = ["FR", "DE"]\n')
    code, out, _ = nonstop(
        capsys, url, "config", "set", "gate", "--file", ok, "--reason", "q3"
    )
    assert code == 0 and "v1 stored; now v1" in out
    refusals = [
        (
            "neg.toml",
            "threshold = -1\n",
            r"gate@1 refuses this config: Expected `int` >= 0 - at `$.threshold`",
        ),
        (
            "new.json",
            '{"review": {"above": 5}}',
            "gate@1 refuses this config: unknown field `$.review`",
        ),
        (
            "rule.toml",
            'countries = ["FR", "FR"]\n',
            "countries ['FR', 'FR'] must not repeat",
        ),
        ("broken.toml", "threshold = [\n", "broken.toml: not valid TOML"),
        ("broken.json", '{"threshold": ', "broken.json: not valid JSON"),
        ("cfg.yaml", "threshold: 1\n", "expected a .toml or .json file, got '.yaml'"),
    ]
    for name, text, message in refusals:
        code, out, err = nonstop(
            capsys, url, "config", "set", "gate", "--file", _file(tmp_path, name, text)
        )
        assert code == 1, name
        assert err.startswith("nonstop: config refused: ") and message in err, err
        assert "nothing was written" in err or name.startswith(("broken", "cfg"))
    code, out, _ = nonstop(capsys, url, "config", "show", "gate")
    assert code == 0 and '"threshold": 40' in out
    second = _file(tmp_path, "two.json", '{"threshold": 60}')
    assert (
        nonstop(capsys, url, "config", "set", "gate", "--file", second, "--by", "bo")[0]
        == 0
    )
    code, out, _ = nonstop(capsys, url, "config", "history", "gate")
    assert code == 0
    assert "set: v1 -> v2 (adds v2)" in out and "threshold: 40 -> 60" in out
    assert 'countries: ["FR","DE"] -> (unset)' in out and "bo:" in out and "(q3)" in out
    code, out, _ = nonstop(capsys, url, "config", "rollback", "gate")
    assert code == 0 and "rolled back: now v1" in out
    code, out, _ = nonstop(capsys, url, "config", "show", "gate", "--version", "2")
    assert code == 0 and '"threshold": 60' in out
    code, _, err = nonstop(capsys, url, "config", "rollback", "gate", "--to", "9")
    assert code == 1 and "gate has no config v9 (stored: v1, v2" in err
    code, _, err = nonstop(capsys, url, "config", "promote", "gate")
    assert code == 1 and "no config canary to promote" in err
    code, out, _ = nonstop(
        capsys, url, "config", "set", "gate", "--file", second, "--canary", "25"
    )
    assert code == 0 and "now v1, canary v3 at 25 %" in out
    code, out, _ = nonstop(capsys, url, "config", "promote", "gate")
    assert code == 0 and "promoted: now v3" in out


def test_status_names_each_engine_and_what_it_runs(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    ok = _file(tmp_path, "ok.json", '{"threshold": 5, "note": "new"}')
    assert nonstop(capsys, url, "config", "set", "gate", "--file", ok)[0] == 0
    with SyncEngine(url, cf.old_registry()) as old:
        old.start("gate", cf.Begin(), instance_id="x", version=1)
    code, out, _ = nonstop(capsys, url, "config", "status", "gate", "--json")
    assert code == 0 and '"applied":0' in out and '"refused":1' in out
    assert "unknown field `$.note`" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], url: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--store", url, "config", "set", "gate"])
    assert exc.value.code == 2
    # Reading commands never create a store.
    code, _, err = nonstop(capsys, url, "config", "status", "gate")
    assert code == 2 and "nonstop init" in err
    assert not Path(url.removeprefix("sqlite:///")).exists()
    assert nonstop(capsys, url, "init")[0] == 0
    code, _, err = nonstop(capsys, url, "config", "show", "gate", "--version", "3")
    assert code == 2 and "gate has no config v3" in err


def test_flags_rollback(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert nonstop(capsys, url, "flags", "set", "f", "--percent", "10")[0] == 0
    assert nonstop(capsys, url, "flags", "set", "f", "--percent", "50")[0] == 0
    assert nonstop(capsys, url, "flags", "kill", "f")[0] == 0
    code, out, _ = nonstop(capsys, url, "flags", "rollback", "f", "--reason", "oops")
    assert code == 0 and "rolled back: 50 %" in out and "killed" not in out
    code, out, _ = nonstop(capsys, url, "flags", "rollback", "f", "--to", "1")
    assert code == 0 and "rolled back: 10 %" in out
    code, _, err = nonstop(capsys, url, "flags", "rollback", "f", "--to", "9")
    assert code == 1 and "definitions 1..5, not 9" in err
    code, _, err = nonstop(capsys, url, "flags", "rollback", "nope")
    assert code == 1 and "unknown flag 'nope'" in err
    code, _, err = nonstop(capsys, url, "flags", "set", "@config", "--on")
    assert code == 2 and "starts with '@' (reserved" in err
    code, out, _ = nonstop(capsys, url, "audit", "flag:f")
    assert code == 0 and "rollback" in out
