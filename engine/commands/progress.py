"""Progress bars and a clean Ctrl-C for the long commands.

Long commands (``migrate``, ``projections run|rebuild``) show a rich progress
bar with the rate and the time left, and treat SIGINT/SIGTERM as "stop after the
batch in flight": the signal sets an event the command checks between batches,
so what was committed stays committed, nothing is half-written, and the command
says where it stopped.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

__all__ = ["INTERRUPTED", "bar", "counting", "interruptible", "rate"]

INTERRUPTED = 130
"""Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells expect."""


@contextmanager
def interruptible() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set, instead of raising, while inside.

    A second Ctrl-C raises ``KeyboardInterrupt`` as usual, for an operator who
    will not wait for the batch in flight. The previous handlers come back on
    exit. Outside the main thread (signals cannot be caught there) the event
    is never set.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def bar(out: Console) -> Progress:
    """A progress bar with done/total, percentage, a ``rate`` field and the ETA.

    Tasks are added with ``rate=""`` and updated with :func:`rate`.
    """
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=out,
        transient=False,
    )


@contextmanager
def counting(
    out: Console, what: str, unit: str = "instances"
) -> Iterator[Callable[[int, int], None]]:
    """A bar for one job; yields ``show(done, total)`` to report progress."""
    with bar(out) as progress:
        task = progress.add_task(what, total=None, rate="")
        began = time.monotonic()

        def show(done: int, total: int) -> None:
            progress.update(
                task,
                completed=done,
                total=max(total, 1),
                rate=rate(done, time.monotonic() - began, unit),
            )

        yield show


def rate(done: int, seconds: float, unit: str) -> str:
    """``done`` per second as ``"1,234 unit/s"``."""
    per = done / seconds if seconds > 0 else 0.0
    return f"{per:,.0f} {unit}/s"
