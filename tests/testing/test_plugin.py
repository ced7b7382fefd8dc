"""The plugin and the kit used as a user would: a test suite run by pytest.

The suite below (a workflow module, a conftest and a test module) is written
to a scratch directory and run by pytest in a subprocess, which finds the
plugin through the installed package's ``pytest11`` entry point.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SHOP = """
from typing import Annotated, Any

import msgspec

from engine import CommandRejected, Workflow, WorkflowRegistry, event


class OpenCart(msgspec.Struct, frozen=True):
    customer: str


class AddItem(msgspec.Struct, frozen=True):
    sku: str
    qty: Annotated[int, msgspec.Meta(ge=1, le=100)]


@event("UserCartOpened")
class CartOpened(msgspec.Struct, frozen=True):
    customer: str


@event("UserItemAdded")
class ItemAdded(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Cart(msgspec.Struct, frozen=True):
    customer: str = ""
    items: dict[str, int] = {}


def decide(cart: Cart, cmd: Any, ctx: Any) -> list[Any]:
    if isinstance(cmd, OpenCart):
        return [CartOpened(cmd.customer)]
    if isinstance(cmd, AddItem):
        return [ItemAdded(cmd.sku, cmd.qty)]
    raise CommandRejected(f"unknown command {cmd!r}")


def evolve(cart: Cart, e: Any) -> Cart:
    if isinstance(e, CartOpened):
        return msgspec.structs.replace(cart, customer=e.customer)
    if isinstance(e, ItemAdded):
        items = {**cart.items, e.sku: cart.items.get(e.sku, 0) + e.qty}
        return msgspec.structs.replace(cart, items=items)
    return cart


def hotfixed(cart: Cart, e: Any) -> Cart:
    # the same version, now keeping the first quantity of a sku only
    if isinstance(e, ItemAdded) and e.sku in cart.items:
        return cart
    return evolve(cart, e)


shop = Workflow(
    name="shop", version=1, state_type=Cart, initial=Cart, decide=decide,
    evolve=evolve, status=lambda c: "running",
    inputs=(OpenCart,), commands=(AddItem,),
)
"""

CONFTEST = """
import pytest
from engine import WorkflowRegistry
from shop import shop


@pytest.fixture
def nonstop_registry():
    reg = WorkflowRegistry()
    reg.register(shop)
    return reg
"""

TESTS = """
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.testing import assert_replay_stable, commands, given as scenario
from shop import AddItem, CartOpened, ItemAdded, OpenCart, hotfixed, shop

teas = commands(shop, overrides={AddItem: {"sku": st.just("tea")}})
seen = []


def test_sync_engine(nonstop_sync_engine):
    nonstop_sync_engine.start("shop", OpenCart("ann"), instance_id="c1")
    info = nonstop_sync_engine.send("c1", AddItem("tea", 2))
    assert info.state.items == {"tea": 2}
    seen.append(nonstop_sync_engine)


def test_the_sync_engine_was_closed_after_the_test():
    assert seen and seen[0]._loop.is_closed()


def test_sqlite_sync_engine(nonstop_sqlite_sync_engine, tmp_path):
    nonstop_sqlite_sync_engine.start("shop", OpenCart("bob"), instance_id="c2")
    assert (tmp_path / "nonstop.db").exists()
    assert nonstop_sqlite_sync_engine.get("c2").position == 2


@pytest.mark.asyncio
async def test_async_engine(nonstop_engine):
    await nonstop_engine.start("shop", OpenCart("cy"), instance_id="c3")
    assert (await nonstop_engine.get("c3")).state.customer == "cy"


@pytest.mark.asyncio
async def test_async_sqlite_engine(nonstop_sqlite_engine, tmp_path):
    await nonstop_sqlite_engine.start("shop", OpenCart("di"), instance_id="c4")
    assert (tmp_path / "nonstop.db").exists()


def test_given_when_then():
    scenario(shop, [CartOpened("ann")]).when(AddItem("tea", 2)).then(
        ItemAdded("tea", 2)
    )


def test_given_when_then_failing():
    scenario(shop, [CartOpened("ann")]).when(AddItem("tea", 2)).then(
        ItemAdded("tea", 5)
    )


@settings(max_examples=50, deadline=None)
@given(commands(shop))
def test_replay_is_stable(cmds):
    assert_replay_stable(shop, cmds)


@settings(max_examples=300, deadline=None, database=None)
@given(teas)
def test_hotfix(cmds):
    new = dataclasses.replace(shop, evolve=hotfixed)
    assert_replay_stable(shop, cmds, new=new)
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_users_suite_runs_with_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=SHOP, conftest=CONFTEST, test_shop=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=7, failed=2)
    out = result.stdout.str()
    # the failing property is shrunk to its smallest history: the start and
    # two lines of the same sku, each of the smallest quantity (hypothesis
    # says "Falsifying example" or, in newer releases, "Failing test case")
    result.stdout.re_match_lines(
        [
            r".*(Falsifying example|Failing test case): test_hotfix\($",
            r".*cmds=\[OpenCart\(customer=''\), AddItem\(sku='tea', qty=1\), "
            r"AddItem\(sku='tea', qty=1\)\],$",
        ]
    )
    assert "differently from position 4 (UserItemAdded)" in out
    # the failing scenario says what was expected and what was decided
    assert "expected [ItemAdded(sku='tea', qty=5)]" in out
    assert "decided  [ItemAdded(sku='tea', qty=2)]" in out


def test_a_suite_without_a_registry_is_told_what_to_define(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_x="def test_x(nonstop_sync_engine):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture `nonstop_registry`*"])


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(nonstop_sync_engine):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:nonstop")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nonstop_sync_engine' not found*"])


def test_loading_the_plugin_loads_no_store_nor_runtime() -> None:
    # pytest loads it in every run where nonstop is installed: it stays light
    import subprocess
    import sys

    code = (
        "import sys, pytest\n"
        "import engine.testing.plugin\n"
        "heavy = ('eventsourcing', 'engine.runtime', 'engine.store', 'hypothesis')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
