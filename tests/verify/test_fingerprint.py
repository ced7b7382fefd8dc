"""Code fingerprints: what changes them, what does not; recorded and compared."""

from __future__ import annotations

import logging
import types
from typing import Any

import msgspec
import pytest

from engine import Workflow, WorkflowRegistry
from engine.core.fingerprint import fingerprint
from engine.deploy import Deployments
from engine.deploy.code import MISMATCHES, version_fingerprint
from engine.store import open_store
from tests.verify import flows

BASE = '''
import msgspec

class S(msgspec.Struct):
    n: int = 0

def helper(n):
    return n + 1

def evolve(s, e):
    """Adds one."""
    total = helper(s.n)
    return S(total)

def decide(s, c, ctx):
    return []

def status(s):
    return "running"
'''


def _wf(source: str, name: str = "fp_mod") -> Workflow[Any]:
    mod = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)
    return Workflow("fp", 1, mod.S, mod.S, mod.decide, mod.evolve, mod.status)


def test_layout_comments_docstrings_and_local_names_keep_it() -> None:
    cosmetic = (
        BASE.replace("import msgspec\n", "import msgspec\n\n\n# a comment\n")
        .replace('"""Adds one."""', '"""Adds exactly one."""')
        .replace("total", "result")
    )
    assert fingerprint(_wf(BASE)) == fingerprint(_wf(cosmetic))


@pytest.mark.parametrize(
    "change",
    [
        ("return n + 1", "return n + 2"),  # a helper it calls
        ("return S(total)", "return S(total * 1)"),  # evolve itself
        ('return "running"', 'return "completed"'),  # status
        ("n: int = 0", "n: int = 0\n    m: int = 0"),  # the state schema
    ],
)
def test_a_change_of_code_or_state_schema_changes_it(change: tuple[str, str]) -> None:
    assert BASE.count(change[0]) == 1
    assert fingerprint(_wf(BASE)) != fingerprint(_wf(BASE.replace(*change)))


def test_upcasters_are_part_of_it() -> None:
    wf = flows.v1
    plain = fingerprint(wf)
    one = fingerprint(wf, [("tests.verify.Deposited", 1, flows.to_cents)])
    other = fingerprint(wf, [("tests.verify.Deposited", 1, flows.to_cents_wrong)])
    assert len({plain, one, other}) == 3
    assert version_fingerprint(wf) == version_fingerprint(flows.account())


def test_deploy_records_it_and_engines_report_other_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store("memory://")
    ops = Deployments(store, poll_interval=0.0)
    ops.deploy("account", 1, "tests.verify.flows:v1", by="t")
    d = ops.refresh().workflow("account").deployments[1]
    assert d.fingerprint == version_fingerprint(flows.v1)
    # A worker whose account@1 is the hotfix: reported, not silently run.
    worker = Deployments(store, poll_interval=0.0)
    reg = WorkflowRegistry()
    reg.register(flows.hotfix)
    worker.attach(reg)
    MISMATCHES.clear()
    with caplog.at_level(logging.WARNING, logger="nonstop.deploy"):
        worker.refresh()
        worker.refresh()  # logged once
    assert MISMATCHES[("account", 1)] == (
        d.fingerprint,
        version_fingerprint(flows.hotfix),
    )
    warned = [r for r in caplog.records if "runs here with code" in r.message]
    assert len(warned) == 1
    pytest.importorskip("prometheus_client")
    from engine.health.prometheus import HealthCollector

    gauges = [
        m for m in HealthCollector().collect() if m.name == "nonstop_code_mismatch"
    ]
    assert [
        (s.labels["workflow"], s.labels["version"], s.value) for s in gauges[0].samples
    ] == [("account", "1", 1.0)]
    # Recorded in the registry, once: `nonstop versions` and the audit show it.
    d = ops.refresh().workflow("account").deployments[1]
    assert d.mismatched == (worker.worker,)
    mism = [a for a in ops.view.audit if a.action == "code mismatch"]
    assert len(mism) == 1 and worker.worker in mism[0].detail
    # The same code: nothing to report.
    same = Deployments(store, poll_interval=0.0)
    same.attach(flows.registry())
    same.refresh()
    assert ("account", 1) not in MISMATCHES


def test_state_schema_of_unencodable_types_still_fingerprints() -> None:
    class Odd:
        pass

    wf = Workflow[Any]("odd", 1, Odd, Odd, flows.decide, flows.evolve, flows.status)
    assert len(fingerprint(wf)) == 16
    assert msgspec.json.schema(flows.Account)  # the common case has a schema


def test_the_same_code_has_the_same_fingerprint_in_every_process(
    tmp_path: Any,
) -> None:
    import subprocess
    import sys

    (tmp_path / "setcode.py").write_text(
        BASE.replace(
            'return "running"',
            'return "running" if s.n in {"a", "b", "c", "d"} else "failed"',
        )
    )
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import setcode as m\n"
        "from engine import Workflow\n"
        "from engine.core.fingerprint import fingerprint\n"
        "wf = Workflow('fp', 1, m.S, m.S, m.decide, m.evolve, m.status)\n"
        "print(fingerprint(wf))"
    )
    seen = set()
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=True,
        )
        seen.add(done.stdout.strip())
    assert len(seen) == 1
