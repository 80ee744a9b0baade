"""A rendered project's app under uvicorn, as a subprocess on a free loopback port.

The tests that drive an installed variant over real HTTP (the Neon emulation, the real
Better Auth server) start and stop it the same way; they add their own ways of calling it.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import time
from pathlib import Path

import pytest
from postgres import free_port

STARTUP_SECONDS = 60


class AppServer:
    """`app.main:app` from the project's own venv; its output goes to a log in the project."""

    # Extra uvicorn options, for subclasses.
    uvicorn_options: tuple[str, ...] = ()

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        self.port = free_port()
        self.log = path / f"uvicorn-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start uvicorn and wait until /health answers 200; fail with the log if it does not."""
        uvicorn = str(self.path / ".venv" / "bin" / "uvicorn")
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [uvicorn, "app.main:app", *self.uvicorn_options, *address],
                cwd=self.path,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the app exited at startup:\n{self.output()}", pytrace=False)
            if self._healthy():
                return
            time.sleep(0.1)
        pytest.fail(f"the app did not start in {STARTUP_SECONDS}s:\n{self.output()}")

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def output(self, lines: int = 60) -> str:
        """The end of the app's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
