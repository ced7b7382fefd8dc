"""Laws of verification, over generated histories."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, WorkflowRegistry, open_store
from engine.deploy.verify import verify_version
from engine.store import EventStore
from tests.verify import flows
from tests.verify.flows import Deposit, Open
from upcasters import UpcasterRegistry

histories = st.lists(st.lists(st.integers(1, 200), max_size=6), min_size=1, max_size=4)


def _store(accounts: list[list[int]]) -> EventStore:
    store = open_store("memory://")
    reg = WorkflowRegistry()
    reg.register(flows.v1)

    async def go() -> None:
        engine = Engine(
            store,
            reg,
            codec=flows.codec_v1(),
            upcasters=UpcasterRegistry(),
            deployments=False,
        )
        for n, amounts in enumerate(accounts):
            await engine.start("account", Open(), instance_id=f"h{n}")
            for a in amounts:
                await engine.send(f"h{n}", Deposit(a))
        await engine.committer.close()

    asyncio.run(go())
    return store


@given(histories)
@settings(max_examples=25, deadline=None)
def test_first_divergence_is_the_first_decision_whose_state_differs(
    accounts: list[list[int]],
) -> None:
    store = _store(accounts)
    reg = flows.registry()
    codec = flows.codec_v1()
    same = verify_version(store, flows.refactor, reg, codec=codec, instances="all")
    assert same.ok and same.instances == len(accounts)
    assert same.digests == sum(1 + len(a) for a in accounts)
    hot = verify_version(store, flows.hotfix, reg, codec=codec, instances="all")
    expected = [
        (f"h{n}", 3 + next(i for i, a in enumerate(amounts) if a > 100))
        for n, amounts in enumerate(accounts)
        if any(a > 100 for a in amounts)
    ]
    assert [(d.instance_id, d.position) for d in hot.divergences] == expected
