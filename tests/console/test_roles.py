"""Tokens name people with roles: viewers read, operators act as themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.cli import main
from engine.console.auth import (
    Principal,
    parse_tokens_env,
    parse_tokens_file,
    read_tokens_file,
)
from engine.core.errors import ConsoleTokensError
from engine.deploy import Deployments
from tests.console.conftest import APP, Seeded

TOKENS = {
    "op-token": Principal("alice", "operator"),
    "view-token": Principal("bob", "viewer"),
}
ACTIONS = (
    "/api/rollouts/tills/pause",
    "/api/workflows/tills/rollback",
    "/api/workflows/tills/promote",
    "/api/flags/turbo/kill",
    "/api/deadletters/1/replay",
    "/api/config/tills/rollback",
)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_env_and_file_give_names_and_roles(tmp_path: Path) -> None:
    found = parse_tokens_env("token1=alice:operator, token2=bob:viewer")
    assert found == {
        "token1": Principal("alice", "operator"),
        "token2": Principal("bob", "viewer"),
    }
    f = tmp_path / "tokens"
    f.write_text(
        "# who may use the console\ntoken1 alice operator\n\ntoken2 bob viewer # ro\n"
    )
    assert read_tokens_file(str(f)) == found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t1=alice:operator,,t2=bob:viewer", "entry 2: the entry is empty"),
        ("t1=alice", "entry 1: expected TOKEN=NAME:ROLE"),
        ("t1alice:operator", "entry 1: expected TOKEN=NAME:ROLE"),
        ("t1=alice:admin", "entry 1: role 'admin' of 'alice' is not one of viewer"),
        ("=alice:operator", "entry 1: the token is empty"),
        ("t1=:operator", "entry 1: the name is empty"),
        ("t1=a:viewer,t1=b:operator", "entry 2: the token of 'b' is already given"),
    ],
)
def test_a_malformed_env_names_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConsoleTokensError) as caught:
        parse_tokens_env(text)
    assert str(caught.value).startswith("$NONSTOP_CONSOLE_TOKENS, ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3cret alice\n", "tokens, line 1: expected 3 fields"),
        ("a b operator\n# c\ns3cret bob root\n", "line 3: role 'root' of 'bob'"),
        (
            "a x viewer\na y operator\n",
            "line 2: the token of 'y' is already given to 'x' (line 1)",
        ),
        ("# nothing\n\n", "tokens, line 1: the file names no token"),
    ],
)
def test_a_malformed_file_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ConsoleTokensError) as caught:
        parse_tokens_file(text, "tokens")
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)  # the token is never repeated


@given(
    st.dictionaries(
        st.text("abcXYZ0189-_.", min_size=1, max_size=12),
        st.tuples(
            st.text("abcdefgh-", min_size=1, max_size=8),
            st.sampled_from(["viewer", "operator"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_env_and_file_read_back_what_was_written(
    tokens: dict[str, tuple[str, str]],
) -> None:
    env = ",".join(f"{t}={n}:{r}" for t, (n, r) in tokens.items())
    lines = "\n".join(f"{t} {n} {r}" for t, (n, r) in tokens.items())
    want = {t: Principal(n, r) for t, (n, r) in tokens.items()}  # type: ignore[arg-type]
    assert parse_tokens_env(env) == want
    assert parse_tokens_file(lines, "f") == want


def test_a_viewer_reads_but_every_action_is_refused(seeded: Seeded) -> None:
    c = seeded.client(tokens=TOKENS)
    assert c.get("/api/workflows", headers=_bearer("view-token")).status_code == 200
    for path in ACTIONS:
        r = c.post(
            path,
            json={"reason": "x", "version": "2"},
            headers={**csrf_as(c, "view-token"), **_bearer("view-token")},
        )
        assert r.status_code == 403, path
        assert "bob is a viewer: viewers cannot act" in r.json()["error"], path
    view = Deployments(seeded.url).refresh()
    assert not view.flags["turbo"].killed
    assert view.workflow("tills").routing.stable == 1  # type: ignore[union-attr]


def test_an_unknown_or_missing_token_is_refused(seeded: Seeded) -> None:
    c = seeded.client(tokens=TOKENS)
    assert c.get("/api/workflows").status_code == 401
    assert c.get("/", headers=_bearer("op-token ")).status_code == 200
    assert c.get("/", headers=_bearer("nope")).status_code == 401
    r = c.post("/api/workflows/tills/rollback", json={"reason": "x"})
    assert r.status_code == 401


def csrf_as(c: object, token: str) -> dict[str, str]:
    got = c.get("/api/csrf", headers=_bearer(token))  # type: ignore[attr-defined]
    return {"X-CSRF-Token": got.json()["csrf"]}


def test_an_operator_acts_under_the_token_s_name(seeded: Seeded) -> None:
    c = seeded.client(tokens=TOKENS)
    h = {**csrf_as(c, "op-token"), **_bearer("op-token")}
    # the operator header cannot pass for somebody else
    h["X-Nonstop-Operator"] = "mallory"
    r = c.post("/api/workflows/tills/rollback", json={"reason": "slow"}, headers=h)
    assert r.status_code == 200, r.text
    audit = c.get("/api/audit", headers=h).json()
    last = next(a for a in reversed(audit) if a["action"] == "rollback")
    assert (last["by"], last["reason"]) == ("alice", "slow")


def test_a_viewer_s_pages_have_no_action_button(seeded: Seeded) -> None:
    c = seeded.client(tokens=TOKENS)
    for path in ("/", "/rollouts/tills", "/flags", "/deadletters"):
        viewer = c.get(path, headers=_bearer("view-token"))
        operator = c.get(path, headers=_bearer("op-token"))
        assert viewer.status_code == operator.status_code == 200, path
        assert "<form class=act" not in viewer.text, path
        assert "<form class=act" in operator.text, path
        assert "bob (viewer)" in viewer.text


def test_the_single_token_still_acts_as_the_operator(seeded: Seeded) -> None:
    c = seeded.client(token="s3cret", tokens=TOKENS)
    h = {**csrf_as(c, "s3cret"), **_bearer("s3cret"), "X-Nonstop-Operator": "ann"}
    r = c.post("/api/flags/turbo/kill", json={"reason": "x"}, headers=h)
    assert r.status_code == 200
    audit = c.get("/api/audit", headers=h).json()
    assert next(a for a in reversed(audit) if "kill" in a["action"])["by"] == "ann"
    # a login with a viewer token gives the cookie of that viewer
    r = c.get("/login?token=view-token", follow_redirects=False)
    assert r.status_code == 303
    assert "<form class=act" not in c.get("/flags").text


def test_the_cli_refuses_a_malformed_tokens_file(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.console.conftest import seed

    seed(sqlite_url)
    f = tmp_path / "tokens"
    f.write_text("abc alice operator\ndef bob superuser\n")
    args = ["--store", sqlite_url, "--app", APP, "console", "--port", "1"]
    assert main([*args, "--tokens-file", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}, line 2: role 'superuser' of 'bob'" in err
    assert main([*args, "--tokens-file", str(tmp_path / "none")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_the_cli_refuses_a_malformed_tokens_env(
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.console.conftest import seed

    seed(sqlite_url)
    monkeypatch.setenv("NONSTOP_CONSOLE_TOKENS", "abc=alice:operator,def-bob")
    args = ["--store", sqlite_url, "--app", APP, "console", "--port", "1"]
    assert main(args) == 2
    assert "$NONSTOP_CONSOLE_TOKENS, entry 2: expected TOKEN=NAME:ROLE" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_nonstop_console_reads_people_s_tokens_from_the_environment(
    sqlite_url: str,
) -> None:
    import urllib.error
    import urllib.request

    from tests.console.conftest import seed
    from tests.console.test_serve import _get, served

    seed(sqlite_url)
    env = {"NONSTOP_CONSOLE_TOKENS": "op1=alice:operator,view1=bob:viewer"}
    with served(sqlite_url, env=env) as base:
        status, body = _get(f"{base}/", "view1")
        assert status == 200 and "bob (viewer)" in body and "<form" not in body
        assert _get(f"{base}/", "nope")[0] == 401
        assert "<form class=act" in _get(f"{base}/", "op1")[1]
        csrf = _get(f"{base}/api/csrf", "view1")[1].split('"')[3]
        req = urllib.request.Request(
            f"{base}/api/flags/turbo/kill",
            data=b'{"reason": "x"}',
            headers={
                "Authorization": "Bearer view1",
                "X-CSRF-Token": csrf,
                "Content-Type": "application/json",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403
    assert not Deployments(sqlite_url).refresh().flags["turbo"].killed
