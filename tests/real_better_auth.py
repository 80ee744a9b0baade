"""A real Better Auth server (Node, tests/better_auth_server/) and a small HTTP client for it.

tests/better_auth_neon_server/ holds a second one: Better Auth 1.4.18 set up as Neon Auth
runs it (schema neon_auth, routes under /neondb/auth), with its own lock file.

`install()` runs `npm ci` once per lock file into a cache directory outside the repository,
keyed by the hash of package.json, package-lock.json and server.mjs: a rerun reuses it at
once, an edit to any of the three installs afresh. `BetterAuthServer` starts the server on a
free loopback port against a given PostgreSQL database (Better Auth migrates it itself) and
stops it again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postgres import free_port

SOURCE = Path(__file__).resolve().parent / "better_auth_server"
NEON_SOURCE = Path(__file__).resolve().parent / "better_auth_neon_server"
NEON_BASE_PATH = "/neondb/auth"
SOURCE_FILES = ("package.json", "package-lock.json", "server.mjs")
MIN_NODE = 20
INSTALL_TIMEOUT = 300
STARTUP_SECONDS = 60


class NodeUnavailable(RuntimeError):
    """Node or npm is missing or too old; the message says what to install."""


def cache_root() -> Path:
    configured = os.environ.get("BETTER_AUTH_SERVER_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fastapi-sqlmodel-neon-template"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def find_node() -> tuple[str, str]:
    """Paths of node and npm, or NodeUnavailable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise NodeUnavailable(
            f"{missing} not found on PATH; install Node.js {MIN_NODE}+ and npm "
            "(Debian: apt-get install nodejs npm) or run .ci/run"
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE:
        raise NodeUnavailable(f"Better Auth needs Node.js {MIN_NODE}+, found {version or '?'}")
    return node, npm


def install(npm: str, source: Path = SOURCE) -> Path:
    """The server's directory with its node_modules, installed by `npm ci` when not cached."""
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\0" + (source / name).read_bytes() + b"\0")
    root = cache_root()
    target = root / f"better-auth-server-{digest.hexdigest()[:16]}"
    if (target / "node_modules" / ".package-lock.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Installed aside, then renamed: a worker never sees a half-installed directory, and two
    # workers installing at once both succeed (the second one's copy is dropped).
    staging = Path(tempfile.mkdtemp(prefix="better-auth-server-", dir=root))
    try:
        for name in SOURCE_FILES:
            shutil.copy2(source / name, staging / name)
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=staging,
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{_tail(result.stdout + result.stderr)}")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "node_modules" / ".package-lock.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: Any

    def expect(self, status: int, what: str) -> Any:
        if self.status != status:
            raise AssertionError(f"{what}: expected {status}, got {self.status} {self.body!r}")
        return self.body


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Response:
    """One HTTP request to 127.0.0.1:port; a JSON body is decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body)
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        data = response.read()
        decoded: Any = data.decode(errors="replace")
        if data and response.getheader("Content-Type", "").startswith("application/json"):
            decoded = json.loads(data)
        return Response(response.status, response.headers, decoded)
    finally:
        conn.close()


@dataclass
class Account:
    """A user signed up through Better Auth, with their session cookie."""

    email: str
    password: str
    user: dict[str, Any]
    cookie: str = field(repr=False)

    @property
    def id(self) -> str:
        # Better Auth's JSON carries the id as a string, also with serial ids.
        return str(self.user["id"])


class BetterAuthServer:
    """`node server.mjs` from an installed directory, on a free port on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        node: str,
        database_url: str,
        *,
        generate_id: str | None = None,
        algorithm: str | None = None,
        jwks_path: str | None = None,
        rotation_seconds: float | None = None,
        grace_seconds: float | None = None,
        base_path: str = "/api/auth",
        secret: str | None = None,
    ) -> None:
        self.directory = directory
        self.base_path = base_path
        # Two servers given one secret can read each other's keys (a Neon branch's copy).
        self.secret = secret or secrets.token_urlsafe(32)
        self.node = node
        settings = {
            "DATABASE_URL": database_url,
            "BA_GENERATE_ID": generate_id,
            "BA_JWT_ALG": algorithm,
            "BA_JWKS_PATH": jwks_path,
            "BA_ROTATION_SECONDS": rotation_seconds,
            "BA_GRACE_SECONDS": grace_seconds,
        }
        self.settings = {k: str(v) for k, v in settings.items() if v is not None}
        self.jwks_path = jwks_path or "/jwks"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="better-auth-", suffix=".log")[1])

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}{self.base_path}{self.jwks_path}"

    def output(self) -> str:
        return _tail(self.log.read_text(errors="replace"), 60)

    def start(self) -> None:
        env = {
            # PATH only: a developer's NODE_OPTIONS or PG* variables must not change the server.
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "BETTER_AUTH_SECRET": self.secret,
            **self.settings,
        }
        for _attempt in range(3):
            self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [self.node, "server.mjs"],
                    cwd=self.directory,
                    env={**env, "PORT": str(self.port)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return
            # The port may have been taken between probing and binding: try another one.
            if "EADDRINUSE" not in self.output():
                break
        self.stop()
        raise RuntimeError(f"Better Auth did not start:\n{self.output()}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if f"ready {self.url}" in self.log.read_text(errors="replace"):
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def __enter__(self) -> BetterAuthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)

    # --- Better Auth's HTTP API, as a browser client would call it ---------------------

    def call(
        self, method: str, path: str, *, cookie: str | None = None, body: Any = None
    ) -> Response:
        assert self.port is not None, "server not started"
        # Better Auth checks the Origin of cookie-carrying requests against its trusted ones.
        headers = {"Origin": self.url}
        if cookie:
            headers["Cookie"] = cookie
        return request(self.port, method, f"{self.base_path}{path}", body=body, headers=headers)

    def sign_up(self, name: str) -> Account:
        email = f"{name.lower()}-{secrets.token_hex(4)}@example.com"
        password = secrets.token_urlsafe(16)
        response = self.call(
            "POST", "/sign-up/email", body={"email": email, "password": password, "name": name}
        )
        return self._account(response, email, password, f"sign-up of {name}")

    def sign_in(self, email: str, password: str) -> Account:
        response = self.call("POST", "/sign-in/email", body={"email": email, "password": password})
        return self._account(response, email, password, f"sign-in of {email}")

    def _account(self, response: Response, email: str, password: str, what: str) -> Account:
        body = response.expect(200, what)
        cookies = [
            value.split(";", 1)[0]
            for key, value in response.headers.items()
            if key.lower() == "set-cookie"
        ]
        session = [c for c in cookies if c.startswith("better-auth.session_token=")]
        if not session:
            raise AssertionError(f"{what} set no session cookie: {cookies}")
        return Account(email, password, body["user"], session[0])

    def token(self, account: Account) -> str:
        """A JWT from GET /api/auth/token, the jwt() plugin's endpoint."""
        body = self.call("GET", "/token", cookie=account.cookie).expect(200, "GET /token")
        token: str = body["token"]
        return token

    def session_token(self, account: Account) -> str:
        """A JWT from the set-auth-jwt header of GET /api/auth/get-session."""
        response = self.call("GET", "/get-session", cookie=account.cookie)
        response.expect(200, "GET /get-session")
        token = response.headers.get("set-auth-jwt")
        if not token:
            raise AssertionError(f"get-session sent no set-auth-jwt header: {response.headers}")
        return token

    def jwks(self) -> dict[str, Any]:
        assert self.port is not None
        body: dict[str, Any] = request(
            self.port, "GET", f"{self.base_path}{self.jwks_path}"
        ).expect(200, f"GET {self.jwks_path}")
        return body

    def delete_user(self, account: Account) -> None:
        body = {"password": account.password}
        self.call("POST", "/delete-user", cookie=account.cookie, body=body).expect(
            200, "POST /delete-user"
        )
