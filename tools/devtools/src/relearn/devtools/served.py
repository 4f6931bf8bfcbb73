"""An ASGI app served by uvicorn on a free loopback port, in a thread of the test process (real sockets:
timeouts, disconnects and HTTP clients behave as against a deployed service)."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.types import ASGIApp

from relearn.devtools.broker import free_port


class Served:
    def __init__(self, app: ASGIApp, *, start_timeout_s: float = 60.0) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
