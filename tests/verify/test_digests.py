"""State digests at write time: recorded on each decision's last event, and
right across snapshots, migration events and upcasting."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, WorkflowRegistry, open_store
from engine.core.digest import canonical, state_digest
from engine.core.events import Envelope
from engine.core.replay import Replay
from engine.core.verify import check_stream, recorded_digest
from engine.deploy.verify import verify_version
from engine.store import EventStore, NewRecord
from tests.verify.flows import (
    Account,
    Close,
    Deposit,
    Open,
    account,
    cents_codec,
    codec_v1,
    decide_cents,
    evolve_cents,
    to_cents,
    to_cents_wrong,
    variant,
)
from upcasters import UpcasterRegistry


def _run(
    store: EventStore, reg: WorkflowRegistry, script: dict[str, list[Any]]
) -> None:
    async def go() -> None:
        engine = Engine(
            store,
            reg,
            codec=codec_v1(),
            upcasters=UpcasterRegistry(),
            deployments=False,
        )
        for iid, commands in script.items():
            await engine.start("account", commands[0], instance_id=iid)
            for c in commands[1:]:
                await engine.send(iid, c)
        await engine.committer.close()
        await engine.loader.close()

    asyncio.run(go())


def _registry(wf: Any) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(wf)
    return reg


SCRIPT = {
    "a1": [Open(), Deposit(5), Deposit(500), Deposit(7)],
    "a2": [Open("bob"), Deposit(1), Deposit(2), Close()],
}


def test_each_decision_records_the_digest_of_its_state() -> None:
    store = open_store("memory://")
    _run(store, _registry(account()), SCRIPT)
    rows = store.read_stream("a1")
    digests = [recorded_digest(r.data) for r in rows]
    # Started + Opened are one decision: only its last event carries a digest.
    assert digests[0] is None
    states = [Account("ann"), Account("ann", 5, 1), Account("ann", 505, 2)]
    states.append(Account("ann", 512, 3))
    assert digests[1:] == [state_digest(s) for s in states]


_ints = st.integers(-(2**63), 2**63 - 1)


@given(st.dictionaries(st.text(max_size=5), _ints), st.lists(_ints))
@settings(max_examples=50)
def test_digest_depends_only_on_the_canonical_encoding(
    d: dict[str, int], xs: list[int]
) -> None:
    shuffled = dict(reversed(list(d.items())))
    assert state_digest({"d": d, "xs": xs}) == state_digest(
        {"xs": tuple(xs), "d": shuffled}
    )
    assert canonical(d) == canonical(shuffled)


def test_old_events_without_digests_stay_readable() -> None:
    store = open_store("memory://")
    _run(store, _registry(account()), {"a1": [Open(), Deposit(5)]})
    # An envelope as written before digests existed: nine fields, no digest.
    old = msgspec.msgpack.Decoder(list[Any]).decode(store.read_stream("a1")[2].data)
    assert len(old) == 10
    legacy = msgspec.msgpack.encode(old[:9])
    store.append([NewRecord("a1", 4, "tests.verify.Deposited", legacy)])
    assert recorded_digest(legacy) is None
    env = msgspec.msgpack.decode(legacy, type=Envelope[Any])
    assert env.digest is None
    rule = Replay(codec_v1(), _registry(account()).get)
    result = check_stream(rule, "a1", store.read_stream("a1"))
    assert isinstance(result, tuple)
    assert result[0].state.balance == 10
    assert result[1] == 2  # the two digested decisions matched


def test_digests_hold_across_snapshots(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    wf = account(snapshot_every=2)
    store = open_store(url)
    # Several engines in turn: each loads the instance from its snapshot.
    for i in range(4):
        _run(store, _registry(wf), {f"x{i}": [Open(), Deposit(i + 1)]})
        more = {f"x{j}": [Deposit(j + 10)] for j in range(i + 1)}
        for iid, cmds in more.items():

            async def go(iid: str = iid, cmds: list[Any] = cmds) -> None:
                engine = Engine(
                    store,
                    _registry(wf),
                    codec=codec_v1(),
                    upcasters=UpcasterRegistry(),
                    deployments=False,
                )
                for c in cmds:
                    await engine.send(iid, c)
                await engine.committer.close()
                await engine.loader.close()

            asyncio.run(go())
    assert store.load_snapshot("x0") is not None
    report = verify_version(store, wf, _registry(wf), codec=codec_v1(), instances="all")
    assert report.ok, report.divergences
    assert report.instances == 4
    assert report.digests == 4 * 2 + (4 + 3 + 2 + 1)  # starts, deposits, sends
    assert report.undigested == 0


def test_digests_hold_across_migration() -> None:
    store = open_store("memory://")
    v1, v2 = account(1), account(2)
    reg = WorkflowRegistry()
    reg.register(v1, v2)

    async def go() -> None:
        engine = Engine(
            store,
            reg,
            codec=codec_v1(),
            upcasters=UpcasterRegistry(),
            deployments=False,
        )
        for iid in ("m1", "m2"):
            await engine.start("account", Open(), instance_id=iid, version=1)
            await engine.send(iid, Deposit(3))
        await engine.migrate(
            "m1",
            2,
            lambda s: Account(s.owner, s.balance * 2, s.deposits),
            by="t",
            reason="t",
        )
        await engine.send("m1", Deposit(4))
        await engine.committer.close()

    asyncio.run(go())
    same = verify_version(store, v2, reg, codec=codec_v1(), instances="all")
    assert same.ok and same.instances == 1 and same.digests >= 2
    # A v2 whose status/state_type is the same but whose evolve changed.
    changed = variant(v2, evolve=lambda s, e: Account(s.owner, s.balance + 1000))
    bad = verify_version(store, changed, reg, codec=codec_v1(), instances="all")
    assert [(d.instance_id, d.position) for d in bad.divergences] == [("m1", 5)]
    assert bad.divergences[0].diff == "balance: 10 -> 1006; deposits: 2 -> 0"


def test_digests_hold_across_upcasting() -> None:
    store = open_store("memory://")
    _run(store, _registry(account()), SCRIPT)
    wf = variant(account(), evolve=evolve_cents, decide=decide_cents)
    codec, _ = cents_codec(to_cents)
    ok = verify_version(store, wf, _registry(account()), codec=codec, instances="all")
    assert ok.ok, ok.divergences
    assert ok.digests == 8
    wrong, _ = cents_codec(to_cents_wrong)
    bad = verify_version(store, wf, _registry(account()), codec=wrong, instances="all")
    # a1's third event deposits 500: the changed upcaster reads it as 50.
    assert [(d.instance_id, d.position) for d in bad.divergences] == [("a1", 4)]
    assert bad.divergences[0].event_type == "tests.verify.Deposited"


@pytest.mark.parametrize("flag", [True, False])
def test_digests_can_be_turned_off(flag: bool) -> None:
    store = open_store("memory://")
    reg = _registry(account())

    async def go() -> None:
        engine = Engine(
            store,
            reg,
            codec=codec_v1(),
            upcasters=UpcasterRegistry(),
            deployments=False,
        )
        engine.decider.digests = flag
        await engine.start("account", Open(), instance_id="d")
        await engine.committer.close()

    asyncio.run(go())
    assert (recorded_digest(store.read_stream("d")[-1].data) is not None) is flag


@given(
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.one_of(st.none(), st.text(max_size=3)),
    st.binary(max_size=12),
    st.booleans(),
)
@settings(max_examples=300)
def test_the_digest_read_from_the_tail_equals_a_full_decode(
    digest: int | None, key: str | None, blob: bytes, old: bool
) -> None:
    from engine.core.verify import _decoded_digest

    env = Envelope(1, {"b": blob}, 1, "w@1", None, None, None, None, key, digest)
    data = msgspec.msgpack.encode(env)
    if old:  # as written before digests: nine fields
        data = msgspec.msgpack.encode(msgspec.msgpack.decode(data)[:9])
    assert recorded_digest(data) == _decoded_digest(data)
    assert recorded_digest(data) == (None if old else digest)


@pytest.mark.parametrize(
    "digest", [0, 1, 0xC0, 0xCF, 2**32, 2**64 - 1, 0xC0 << 56 | 0xC0]
)
def test_the_digest_tail_edge_cases(digest: int) -> None:
    for key in (None, "k"):
        env = Envelope(1, {"x": 1}, 1, "w@1", None, None, None, None, key, digest)
        assert recorded_digest(msgspec.msgpack.encode(env)) == digest


@given(st.lists(_ints), st.text())
def test_the_digest_is_blake2b_64_of_the_canonical_encoding(
    xs: list[int], t: str
) -> None:
    from hashlib import blake2b

    state = {"xs": xs, "t": t}
    plain = blake2b(canonical(state), digest_size=8).digest()
    assert state_digest(state) == int.from_bytes(plain, "big")
