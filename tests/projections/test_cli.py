"""``nonstop projections ...`` against a real SQLite store."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine import SyncEngine
from engine.cli import main
from engine.demo import orders

USER_MODULE = """
from projections import Projection

def build():
    p = Projection("per_type", tables=["counts"])

    @p.setup
    def create(tx):
        tx.execute(
            f"CREATE TABLE {tx.table('counts')} (type TEXT PRIMARY KEY, n BIGINT)"
        )

    @p.on("*")
    def count(tx, e):
        if e.type == "OrderShipped" and FAIL:
            raise ValueError("no shipping today")
        t = tx.table("counts")
        tx.execute(
            f"INSERT INTO {t} (type, n) VALUES (?, 1) "
            f"ON CONFLICT (type) DO UPDATE SET n = {t}.n + 1",
            (e.type,),
        )

    return [p]

FAIL = False
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with SyncEngine(url, orders.registry()) as engine:
        engine.start("orders", orders.PlaceOrder("o-1", 5, "ada"), instance_id="i1")
        engine.send("i1", orders.Pay(5))
        engine.send("i1", orders.Ship("ups"))
        engine.start("orders", orders.PlaceOrder("o-2", 7, "bob"), instance_id="i2")
    (tmp_path / "userproj.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cells(out: str, build: str) -> list[str]:
    """The status row of ``build``, cell by cell."""
    line = next(x for x in out.splitlines() if f" {build} " in x and "│" in x)
    return [c.strip() for c in line.split("│")[1:-1]]


def test_status_before_anything_ran(capsys, store):
    code, out, _ = run(capsys, "--store", store, "projections", "status")
    assert code == 0 and "no projections yet" in out


def test_run_once_then_status(capsys, store):
    code, out, err = run(
        capsys,
        "--store",
        store,
        "projections",
        "run",
        "--once",
        "--projections",
        "userproj:build",
    )
    assert code == 0, err
    assert "applied 12 events to 2 projections" in out  # 6 events each
    # The built-in projection is at version 2 (it records unreadable instances).
    for name, v in (("nonstop_instances", "2"), ("per_type", "1")):
        row = cells(out, f"{name}_v{v}")
        assert row[:7] == [name, v, f"{name}_v{v}", "serving *", "6", "0", "0.0"]


def test_rebuild_switches_to_a_new_build(capsys, store):
    run(capsys, "--store", store, "projections", "run", "--once")
    code, out, _ = run(
        capsys, "--store", store, "projections", "rebuild", "nonstop_instances"
    )
    assert code == 0
    assert "new build nonstop_instances_v2_r1 requested" in out
    assert "built nonstop_instances_v2_r1 from 6 events" in out
    assert cells(out, "nonstop_instances_v2_r1")[3] == "serving *"
    code, out, _ = run(capsys, "--store", store, "instances")
    assert "2 instances (1 completed, 1 running)" in out


def test_rebuild_without_the_code_leaves_it_to_a_runner(capsys, store):
    run(
        capsys,
        "--store",
        store,
        "projections",
        "run",
        "--once",
        "--projections",
        "userproj:build",
    )
    code, out, _ = run(capsys, "--store", store, "projections", "rebuild", "per_type")
    assert code == 0 and "its code is not here" in out
    assert cells(out, "per_type_v1_r1")[3] == "building"
    assert cells(out, "per_type_v1")[3] == "serving *"  # until the new one caught up


def test_failure_resume_and_skip(capsys, store, monkeypatch):
    import userproj

    monkeypatch.setattr(userproj, "FAIL", True)
    args = ("--store", store, "projections")
    code, out, _ = run(
        capsys, *args, "run", "--once", "--projections", "userproj:build"
    )
    assert code == 1  # status exits 1 when a projection failed
    assert "failed" in out and "OrderShipped at global position 4" in out
    assert "ValueError: no shipping today" in out
    code, out, _ = run(capsys, *args, "status")
    assert code == 1
    code, out, _ = run(capsys, *args, "resume", "per_type")
    assert code == 0 and "retrying OrderShipped at global position 4" in out
    with pytest.raises(SystemExit) as usage:
        run(capsys, *args, "skip", "per_type")  # argparse: --reason is required
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err
    code, out, _ = run(capsys, *args, "skip", "per_type", "--reason", "x")
    assert code == 2  # nothing failed right now (resumed)
    run(capsys, *args, "run", "--once", "--projections", "userproj:build")
    code, out, _ = run(capsys, *args, "skip", "per_type", "--reason", "carrier bug")
    assert code == 0 and "skipped OrderShipped at global position 4" in out
    code, out, _ = run(
        capsys, *args, "run", "--once", "--projections", "userproj:build"
    )
    assert code == 0
    code, out, _ = run(capsys, *args, "skips")
    assert "carrier bug" in out and "1 skipped" in out


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("userproj", "expected MODULE:ATTRIBUTE"),
        ("userproj:nothing", "has no attribute 'nothing'"),
        ("userproj:FAIL", "is a bool, not Projection(s)"),
        ("no_such_module_here:x", "import failed"),
    ],
)
def test_bad_projections_spec_is_exit_2(capsys, store, spec, reason):
    code, _out, err = run(
        capsys, "--store", store, "projections", "run", "--once", "--projections", spec
    )
    assert code == 2 and reason in err and err.count("\n") == 1


def test_unknown_projection_is_exit_2(capsys, store):
    code, _, err = run(capsys, "--store", store, "projections", "resume", "nope")
    assert code == 2 and "unknown projection 'nope'" in err


def test_batch_must_be_positive(capsys, store):
    with pytest.raises(SystemExit) as usage:
        run(capsys, "--store", store, "projections", "run", "--once", "--batch", "0")
    assert usage.value.code == 2
    assert "must be an integer >= 1, got '0'" in capsys.readouterr().err


def test_run_once_with_small_batches_and_another_database(capsys, store, tmp_path):
    db = f"sqlite:///{tmp_path / 'models.db'}"
    args = ("--store", store, "projections")
    code, out, _ = run(capsys, *args, "run", "--once", "--batch", "2", "--db", db)
    assert code == 0 and "applied 6 events to 1 projections" in out
    code, out, _ = run(capsys, *args, "status", "--db", db)
    assert cells(out, "nonstop_instances_v2")[4:6] == ["6", "0"]
    code, out, _ = run(capsys, *args, "status")  # the store's database has none
    assert "no projections yet" in out
