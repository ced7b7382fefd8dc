"""``nonstop verify`` and the replay check of ``nonstop deploy``, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import SyncEngine
from engine.cli import main
from engine.core.errors import DeployError, VerifyError, VerifyFailed
from engine.deploy import Deployments
from engine.deploy.code import version_fingerprint
from engine.deploy.guard import deploy_guarded
from tests.verify import flows

APP = "tests.verify.flows:registry"
SRC = "tests.verify.flows"


def nonstop(
    capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str]:
    code = main(["--store", url, "--app", APP, *argv])
    got = capsys.readouterr()
    return code, got.out + got.err


def test_a_reducer_change_is_found_at_its_first_divergent_position(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out = nonstop(
        capsys, url, "verify", "account", "1", "--source", f"{SRC}:hotfix"
    )
    assert code == 1
    assert "a1" in out and "balance: 505 -> 506" in out
    assert "a3" in out  # divergent instances are reported whatever their status
    report_line = [ln for ln in out.splitlines() if "divergent" in ln][-1]
    assert "2 divergent" in report_line
    code, out = nonstop(
        capsys,
        url,
        "verify",
        "account",
        "1",
        "--source",
        f"{SRC}:hotfix",
        "--instances",
        "all",
        "--jobs",
        "2",
    )
    assert code == 1 and "2 divergent" in out


def test_exact_positions_through_the_api(url: str) -> None:
    from engine.deploy.verify import verify_version

    report = verify_version(url, flows.hotfix, flows.registry(), instances="all")
    got = [(d.instance_id, d.position, d.event_type) for d in report.divergences]
    assert got == [
        ("a1", 4, "tests.verify.Deposited"),
        ("a3", 3, "tests.verify.Deposited"),
    ]
    assert report.instances == 3 and report.events == 5 + 3 + 4


def test_a_pure_refactor_passes(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out = nonstop(
        capsys,
        url,
        "verify",
        "account",
        "1",
        "--source",
        f"{SRC}:refactor",
        "--instances",
        "all",
    )
    assert code == 0, out
    assert "3 instance(s)" in out and "0 divergent" in out
    code, out = nonstop(
        capsys,
        url,
        "verify",
        "account",
        "1",
        "--source",
        f"{SRC}:refactor",
        "--instances",
        "1",
    )
    assert code == 0 and "1 instance(s)" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out = nonstop(
        capsys,
        url,
        "verify",
        "account",
        "1",
        "--source",
        f"{SRC}:v1",
        "--instances",
        "some",
    )
    assert code == 2 and "'some'" in out
    code, out = nonstop(capsys, url, "verify", "account", "1")
    assert code == 2 and "--source" in out


def test_deploy_of_changed_code_is_refused_forced_or_verified(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out = nonstop(
        capsys, url, "deploy", "account", "1", "--source", f"{SRC}:hotfix"
    )
    assert code == 1
    assert "refused" in out and "a1 at position 4" in out
    with Deployments(url) as ops:
        d = ops.refresh().workflow("account").deployments[1]
        assert d.fingerprint == version_fingerprint(flows.v1)  # nothing written
    code, out = nonstop(
        capsys, url, "deploy", "account", "1", "--source", f"{SRC}:hotfix", "--force"
    )
    assert code == 2 and "--reason" in out
    code, out = nonstop(
        capsys,
        url,
        "deploy",
        "account",
        "1",
        "--source",
        f"{SRC}:hotfix",
        "--force",
        "--reason",
        "incident 42",
        "--by",
        "bo",
    )
    assert code == 0 and "(forced)" in out
    code, out = nonstop(capsys, url, "audit", "account")
    assert code == 0
    assert "redeploy" in out and "forced" in out and "incident 42" in out
    # A refactor of the code that wrote the histories passes the check.
    code, out = nonstop(
        capsys, url, "deploy", "account", "1", "--source", f"{SRC}:refactor"
    )
    assert code == 0 and "(verified)" in out
    code, out = nonstop(capsys, url, "versions", "account", "--json")
    assert version_fingerprint(flows.refactor) in out


def test_same_code_again_is_refused(url: str) -> None:
    with Deployments(url) as ops:
        with pytest.raises(DeployError, match="already deployed with this code"):
            deploy_guarded(ops, url, "account", 1, f"{SRC}:v1")
        with pytest.raises(DeployError, match="drop --canary"):
            deploy_guarded(ops, url, "account", 1, f"{SRC}:refactor", canary=10)
        with pytest.raises(VerifyError, match="--reason"):
            deploy_guarded(ops, url, "account", 1, f"{SRC}:hotfix", skip_verify=True)
        with pytest.raises(VerifyFailed) as err:
            deploy_guarded(ops, url, "account", 1, f"{SRC}:hotfix", registry=None)
        assert err.value.divergences[0].startswith("a1 at position 4")
        out = deploy_guarded(
            ops, url, "account", 1, f"{SRC}:hotfix", skip_verify=True, reason="r"
        )
        assert out.check == "skipped" and out.action == "redeployed"


def test_versions_shows_code_that_differs_here(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    with Deployments(url) as ops:
        deploy_guarded(ops, url, "account", 1, f"{SRC}:hotfix", force=True, reason="r")
    # A worker still on the old code records that it runs other code.
    with SyncEngine(url, flows.registry()) as engine:
        engine.send("a2", flows.Deposit(1))
    code, out = nonstop(capsys, url, "versions", "account", "--json")
    assert code == 0
    recorded = version_fingerprint(flows.hotfix)
    here = version_fingerprint(flows.v1)
    (row,) = json.loads(out)
    assert (row["fingerprint"], row["code_here"]) == (recorded, here)
    assert len(row["other_code_on"]) == 1
    code, out = nonstop(capsys, url, "versions", "account")
    assert code == 0 and "!= here" in out and "worker(s)" in out


def test_migration_mapper(capsys: pytest.CaptureFixture[str], url: str) -> None:
    reg = flows.registry2()
    with SyncEngine(url, reg) as engine:
        engine.migrate("a2", 2, flows.double, by="t", reason="t")
    app = "tests.verify.flows:registry2"

    def verify(mapper: str) -> tuple[int, str]:
        head = ["--store", url, "--app", app, "verify", "account", "--migrate"]
        code = main([*head, "--from", "1", "--to", "2", "--mapper", f"{SRC}:{mapper}"])
        got = capsys.readouterr()
        return code, got.out + got.err

    code, out = verify("double")
    assert code == 0, out
    assert "1 digests matched" in out
    code, out = verify("broken_mapper")
    assert code == 1
    # a2's recorded migration at position 4, and a1 (running v1) as a dry run.
    assert "a2" in out and "a1" in out and "no mapping" in out


def test_migration_mapper_api(url: str) -> None:
    from engine.deploy.verify import verify_migration

    reg = flows.registry2()
    with SyncEngine(url, reg) as engine:
        engine.migrate("a2", 2, flows.double, by="t", reason="t")
    ok = verify_migration(url, reg, "account", 1, 2, flows.double)
    assert ok.ok and ok.digests == 1
    bad = verify_migration(url, reg, "account", 1, 2, lambda s: s)
    assert [(d.instance_id, d.position) for d in bad.divergences] == [("a2", 4)]


def test_a_first_deployment_of_a_version_with_instances_is_verified(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'first.db'}"
    with SyncEngine(url, flows.registry()) as engine:  # not deployed: the app's code
        engine.start("account", flows.Open(), instance_id="f1")
        engine.send("f1", flows.Deposit(500))
    with Deployments(url) as ops:
        with pytest.raises(VerifyFailed, match="f1 at position 3"):
            deploy_guarded(ops, url, "account", 1, f"{SRC}:hotfix")
        out = deploy_guarded(ops, url, "account", 1, f"{SRC}:refactor")
        assert (out.action, out.check) == ("deployed", "verified")
        audit = ops.refresh().audit
    assert audit[0].detail == f"v1 from {SRC}:refactor (verified)"
