"""A TCP proxy for fault injection: cut, stall, or drop the reply to a request.

The shared PostgreSQL server cannot be restarted by a test. Cutting the proxy
does to its clients what a restart does: every open connection is dropped and
new ones are refused until it is restored. Stalling holds every byte in both
directions without a reset (a frozen network path). Dropping a reply forwards
a request that contains a marker to the server, lets the server act on it,
then resets the client's connection before the reply reaches it: a commit
whose acknowledgement is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from engine.kafka.broker import free_port


class _Link:
    """One proxied connection: client side, server side, its state."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter):
        self.client = client
        self.server = server
        self.dropping = False
        """The marked request went up: reset the client at the reply."""
        self.armed = False
        """The ``after`` request went up on this link: its marker counts."""


class Proxy:
    """Forwards ``127.0.0.1:port`` to the target, on its own thread and loop.

    Its own loop: the store connects synchronously, which would block a proxy
    running on the test's loop.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._marker: bytes | None = None
        self._after: bytes | None = None
        self.dropped = threading.Event()
        """Set when a reply was dropped (the client's connection reset)."""
        self._flowing: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, job: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(job, self._loop).result(10)

    def url(self, url: str) -> str:
        """``url`` (a ``postgresql://`` URL of the target) through this proxy."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        user = parts.username or "postgres"
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{self.port}"))

    def start(self) -> None:
        """Accept and forward connections."""
        self._call(self._start())

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self._call(self._cut())

    def stall(self) -> None:
        """Hold every byte in both directions (no reset) until :meth:`resume`."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        """Forward the held bytes and go on."""
        self._call(self._set_flowing(True))

    def drop_reply_to(self, marker: bytes, *, after: bytes | None = None) -> None:
        """Reset the client at the reply to the next request holding ``marker``.

        The request reaches the server whole; the server's reply is discarded
        and the client's connection aborted once it arrives. With ``after``,
        only a request on the connection that sent a request holding ``after``
        counts (the COMMIT of one chosen transaction, say).
        """
        self.dropped.clear()
        self._after = after
        self._marker = marker

    def close(self) -> None:
        """Cut, end every pipe, and stop the thread."""
        self.cut()
        self._call(self._end_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _end_tasks(self) -> None:
        if self._flowing is not None:
            self._flowing.set()  # stalled pipes see their aborted links
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.client.transport.abort()
            link.server.transport.abort()
        self._links.clear()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        await asyncio.gather(
            self._pipe(link, reader, up_writer, upstream=True),
            self._pipe(link, up_reader, writer, upstream=False),
        )
        self._links.discard(link)

    async def _pipe(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if upstream:
                    marker = self._marker
                    after = self._after
                    if marker is not None and after is not None and after in data:
                        link.armed = True
                    if (
                        marker is not None
                        and marker in data
                        and (after is None or link.armed)
                    ):
                        self._marker = self._after = None
                        link.armed = False
                        link.dropping = True
                elif link.dropping:
                    # The server answered the marked request: the client never
                    # hears it. The server side stays open (it has committed).
                    link.client.transport.abort()
                    self.dropped.set()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
