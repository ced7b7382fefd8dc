"""The ``nonstop`` command line, run in-process against real SQLite files."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from engine import SyncEngine, open_store
from engine.cli import main
from engine.demo import orders
from engine.store import NewRecord

PASSWORD = "hunter2-secret"
DEAD_PG = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/test"


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store with a completed v1 order and a running v2 order."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    registry = orders.registry()
    with SyncEngine(url, registry) as engine:
        engine.start(
            "orders",
            orders.PlaceOrder("o-1", 120, "ada"),
            instance_id="order-one",
            command_id="cmd-place-1",
        )
        engine.send("order-one", orders.Pay(120), command_id="cmd-pay-1")
        engine.send("order-one", orders.Ship("ups"), command_id="cmd-ship-1")
        registry.set_current("orders", 2)
        engine.start(
            "orders",
            orders.PlaceOrder("o-2", 75, "bob"),
            instance_id="order-two",
            command_id="cmd-place-2",
        )
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def row(out: str, key: str) -> str:
    lines = [line for line in out.splitlines() if key in line]
    assert lines, f"no line with {key!r} in:\n{out}"
    return lines[0]


# ------------------------------------------------------------------ instances


def test_instances_lists_every_instance(capsys, store):
    code, out, err = run(capsys, "--store", store, "instances")
    assert code == 0, err
    one = row(out, "order-one")
    assert "orders@1" in one and "completed" in one and "stage=shipped" in one
    assert re.search(r"│\s+4\s+│", one)  # Started, placed, paid, shipped
    two = row(out, "order-two")
    assert "orders@2" in two and "running" in two and "stage=placed" in two
    assert "2 instances (1 completed, 1 running)" in out


@pytest.mark.parametrize(
    ("filters", "present", "absent"),
    [
        (["--status", "completed"], "order-one", "order-two"),
        (["--status", "running"], "order-two", "order-one"),
        (["--version", "2"], "order-two", "order-one"),
        (["--workflow", "orders", "--version", "1"], "order-one", "order-two"),
    ],
)
def test_instances_filters(capsys, store, filters, present, absent):
    code, out, _ = run(capsys, "--store", store, "instances", *filters)
    assert code == 0
    assert present in out and absent not in out
    assert "1 instance" in out


def test_instances_of_an_unknown_workflow_is_empty(capsys, store):
    code, out, _ = run(capsys, "--store", store, "instances", "--workflow", "nope")
    assert code == 0
    assert "0 instances" in out and "order-" not in out


def test_store_and_app_come_from_the_environment(capsys, store, monkeypatch):
    monkeypatch.setenv("NONSTOP_STORE", store)
    monkeypatch.setenv("NONSTOP_APP", "engine.demo.orders:registry")
    code, out, _ = run(capsys, "instances")
    assert code == 0
    assert "order-one" in out and "order-two" in out


def test_store_flag_wins_over_the_environment(capsys, store, monkeypatch, tmp_path):
    monkeypatch.setenv("NONSTOP_STORE", f"sqlite:///{tmp_path / 'other.db'}")
    code, out, _ = run(capsys, "--store", store, "instances")
    assert code == 0
    assert "order-one" in out


# ----------------------------------------------------------------- show/history


def test_show_prints_state_and_history(capsys, store):
    code, out, err = run(capsys, "--store", store, "show", "order-one")
    assert code == 0, err
    assert "orders@1" in row(out, "workflow")
    assert "completed" in row(out, "status")
    assert "4" in row(out, "position")
    assert "shipped" in row(out, "state.stage")
    assert "120" in row(out, "state.amount")
    assert "cmd-pay-1" in row(out, "PaymentReceived")
    assert '"carrier":"ups"' in row(out, "OrderShipped")
    assert '"order_id":"o-1"' in row(out, "OrderPlaced")


def test_history_lists_events_in_order_with_metadata(capsys, store):
    code, out, err = run(capsys, "--store", store, "history", "order-two")
    assert code == 0, err
    types = re.findall(r"│ (nonstop\.Started|OrderPlaced|FraudChecked) ", out)
    assert types == ["nonstop.Started", "OrderPlaced"]
    placed = row(out, "OrderPlaced")
    assert "orders@2" in placed and "cmd-place-2" in placed
    cells = [c.strip() for c in placed.split("│")]
    assert cells[1] == "2"  # stream position
    assert int(cells[2]) > 2  # global position, after order-one's events


def test_history_raw_prints_records_as_stored(capsys, store):
    code, out, err = run(capsys, "--store", store, "history", "order-one", "--raw")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["position"] for line in lines] == [1, 2, 3, 4]
    assert [line["type"] for line in lines] == [
        "nonstop.Started",
        "OrderPlaced",
        "PaymentReceived",
        "OrderShipped",
    ]
    assert {line["stream"] for line in lines} == {"order-one"}
    globals_ = [line["global_position"] for line in lines]
    assert globals_ == sorted(globals_) and globals_[0] >= 1
    for line in lines:
        schema, _data, recorded_at, workflow, *_ = line["envelope"]
        current = 2 if line["type"] == "OrderPlaced" else 1  # OrderPlaced schema 2
        assert schema == current and workflow == "orders@1" and recorded_at > 0
    assert lines[2]["envelope"][1] == {"amount": 120}
    assert lines[2]["envelope"][4] == "cmd-pay-1"


def test_history_raw_needs_no_event_classes(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    envelope = msgspec.msgpack.encode(
        [3, {"colour": "teal", "size": 9}, 1_700_000_000_000_000, "paint@7"]
    )
    with open_store(url) as s:
        s.append([NewRecord("bucket-1", 1, "paint.Mixed", envelope)])
    code, out, err = run(
        capsys,
        "--store",
        url,
        "--app",
        "no_such_module_anywhere:registry",
        "history",
        "bucket-1",
        "--raw",
    )
    assert code == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["type"] == "paint.Mixed"
    assert line["envelope"] == [
        3,
        {"colour": "teal", "size": 9},
        1_700_000_000_000_000,
        "paint@7",
    ]
    # The decoded view needs the classes, and says so without a traceback.
    code, out, err = run(capsys, "--store", url, "history", "bucket-1")
    assert code == 2
    assert err.startswith("nonstop: error: ") and "'paint.Mixed'" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "command", [["show", "ghost"], ["history", "ghost"], ["history", "ghost", "--raw"]]
)
def test_unknown_instance_is_one_clear_line(capsys, store, command):
    code, out, err = run(capsys, "--store", store, *command)
    assert code == 2
    assert err == (
        "nonstop: error: unknown instance 'ghost': no events are stored for it. "
        "Check the id (see `nonstop instances`).\n"
    )
    assert out == ""


@pytest.mark.parametrize(
    "command",
    [["instances"], ["show", "x"], ["history", "x"], ["history", "x", "--raw"]],
)
def test_unreachable_postgres_hides_the_password(capsys, command):
    code, _, err = run(capsys, "--store", DEAD_PG, *command)
    assert code == 2
    assert err.startswith("nonstop: error: event store ")
    assert err.count("\n") == 1
    assert PASSWORD not in err
    assert "postgresql://alice:***@127.0.0.1:1/test" in err


def test_unreachable_postgres_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("NONSTOP_STORE", DEAD_PG)
    code, _, err = run(capsys, "instances")
    assert code == 2
    assert PASSWORD not in err and "alice:***@" in err


def test_demo_on_unreachable_postgres_hides_the_password(capsys):
    code, out, err = run(capsys, "demo", "--store", DEAD_PG, "--instances", "2")
    assert code == 2
    assert PASSWORD not in err + out
    assert "alice:***@" in err


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("no_such_module_anywhere:registry", "import failed"),
        ("engine.demo.orders:nothing_here", "has no attribute 'nothing_here'"),
        ("engine.demo.orders", "expected MODULE:ATTRIBUTE"),
        ("engine.demo.orders:v1", "is a Workflow, not a WorkflowRegistry"),
    ],
)
def test_bad_app_is_exit_2(capsys, store, app, reason):
    code, out, err = run(capsys, "--store", store, "--app", app, "instances")
    assert code == 2
    assert err.startswith(f"nonstop: error: cannot load the app {app!r}: ")
    assert reason in err and err.count("\n") == 1
    assert out == ""


def test_bad_app_from_the_environment(capsys, store, monkeypatch):
    monkeypatch.setenv("NONSTOP_APP", "engine.demo.orders:v2")
    code, _, err = run(capsys, "--store", store, "show", "order-one")
    assert code == 2
    assert "'engine.demo.orders:v2'" in err


def test_unknown_scheme_is_exit_2(capsys):
    code, _, err = run(capsys, "--store", "mongodb://x", "instances")
    assert code == 2
    assert "unknown scheme 'mongodb'" in err


# ------------------------------------------------------------------------ demo


def _version_row(out: str, ref: str) -> list[str]:
    line = row(out, f"│ {ref}")
    return [c.strip() for c in line.split("│")[1:-1]]


def test_demo_runs_two_versions_and_judges_only_its_own_run(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    for _ in range(2):
        code, out, err = run(capsys, "demo", "--store", url, "--instances", "40")
        assert code == 0, out + err
        v1 = _version_row(out, "orders@1")
        assert v1[:5] == ["orders@1", "20", "20", "0", "0"]
        assert v1[5].startswith("ok")
        v2 = _version_row(out, "orders@2")
        assert v2[1] == "20" and int(v2[2]) + int(v2[3]) == 20 and v2[4] == "0"
        assert v2[5].startswith("ok")
        assert "opened a new Engine on the same store" in out
        assert "demo OK" in out
    code, out, _ = run(capsys, "--store", url, "instances", "--status", "running")
    assert code == 0 and "0 instances" in out
    code, out, _ = run(
        capsys, "--store", url, "instances", "--workflow", "orders", "--version", "1"
    )
    # 40 from the two runs' first phases, plus the canary phase's share of v1.
    total = re.search(r"(\d+) instances \((\d+) completed\)", out)
    assert total and total[1] == total[2] and int(total[1]) >= 40


def test_demo_store_comes_from_the_global_flag(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'global.db'}"
    code, out, _ = run(capsys, "--store", url, "demo", "--instances", "4")
    assert code == 0
    code, out, _ = run(capsys, "--store", url, "instances")
    # 4, then orders started while the rollout plans run: their number
    # depends on how soon the guard decides.
    found = re.search(r"(\d+) instances", out)
    assert found and int(found[1]) > 4


# ------------------------------------------------------------- console script


def test_console_script_help():
    script = Path(sys.executable).parent / "nonstop"
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for word in ("instances", "show", "history", "demo", "NONSTOP_STORE"):
        assert word in done.stdout
    assert "engine.demo.orders:registry" in done.stdout


@pytest.mark.postgres
def test_history_on_postgres(capsys, pg_url):
    with SyncEngine(pg_url, orders.registry()) as engine:
        engine.start("orders", orders.PlaceOrder("p", 9), instance_id="pg-order")
        engine.send("pg-order", orders.Pay(9), command_id="pg-pay")
    code, out, err = run(capsys, "--store", pg_url, "history", "pg-order", "--raw")
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["type"] for x in lines] == [
        "nonstop.Started",
        "OrderPlaced",
        "PaymentReceived",
    ]
    assert [x["global_position"] for x in lines] == [1, 2, 3]
    code, out, err = run(capsys, "--store", pg_url, "show", "pg-order")
    assert code == 0, err
    assert "pg-pay" in row(out, "PaymentReceived") and "paid" in row(out, "stage")


async def test_demo_verdict_catches_an_instance_on_the_wrong_version(tmp_path):
    from rich.console import Console

    from engine import Engine
    from engine.demo.common import DemoRun, summary, verify

    registry = orders.registry()
    registry.set_current("orders", 2)
    async with Engine(f"sqlite:///{tmp_path / 'v.db'}", registry) as engine:
        await engine.start("orders", orders.PlaceOrder("a", 5), instance_id="a")
        await engine.send("a", orders.CheckFraud())
        run = DemoRun(run_id="test", expected={"a": 1})  # it should have run v1
        finals = await verify(engine, run, ["a"])
    problems = [what for _, what in run.errors]
    assert "started on orders@1 but ran orders@2" in problems
    assert any("ended" in p for p in problems)  # not completed
    buffer = io.StringIO()
    Console(width=200, file=buffer).print(summary(run, finals))
    assert "FAILED" in buffer.getvalue()


def test_show_without_the_app_points_at_raw_history(capsys, store):
    code, _, err = run(capsys, "--store", store, "--app", "nope:r", "show", "order-one")
    assert code == 2
    assert "`nonstop history order-one --raw` needs no app" in err
