"""PostgreSQL for the variant suites: a throwaway cluster, or the server in TEST_DATABASE_URL.

No Python driver is needed: the server is driven with its own binaries (initdb, pg_ctl, psql),
so the template repository's environment stays free of database packages.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL can be used; the message says what is missing."""


class DatabaseServer(Protocol):
    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        ...

    def close(self) -> None: ...


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in SERVER_BINARIES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin; numeric so that 16 sorts above 9.6.
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """Locate a directory holding the PostgreSQL server binaries."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        # pg_config also ships with libpq-dev, whose bindir may hold no server: check it.
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and _has_server(Path(result.stdout.strip())):
            return Path(result.stdout.strip())
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bindir in debian:
        if _has_server(bindir):
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent
        if _has_server(bindir):
            return bindir
    return None


def find_psql(bindir: Path | None) -> str | None:
    if bindir is not None and (bindir / "psql").is_file():
        return str(bindir / "psql")
    return shutil.which("psql")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _psql(psql: str, url: str, sql: str, env: Mapping[str, str]) -> None:
    result = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        env=dict(env),
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed on {sql!r}:\n{_tail(result.stdout + result.stderr)}")


def _check_db_name(name: str) -> None:
    # Names are interpolated into SQL; keep them to plain identifiers that need no quoting.
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")


class PostgresCluster:
    """A private cluster on a free loopback port, removed on stop.

    `conf_lines` are appended to postgresql.conf and `hba_lines`, when given, replace the
    default trust rules, so TLS or password authentication can be layered on later.
    """

    def __init__(
        self,
        bindir: Path,
        *,
        conf_lines: Sequence[str] = (),
        hba_lines: Sequence[str] | None = None,
        user: str = "postgres",
    ) -> None:
        self.bindir = bindir
        self.conf_lines = list(conf_lines)
        self.hba_lines = (
            list(hba_lines)
            if hba_lines is not None
            else ["local all all trust", "host all all 127.0.0.1/32 trust"]
        )
        self.user = user
        self.port: int | None = None
        self.root: Path | None = None
        psql = find_psql(bindir)
        if psql is None:
            raise PostgresUnavailable(f"psql not found in {bindir} or on PATH")
        self.psql = psql

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        assert self.port is not None, "cluster not started"
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> list[str]:
        # initdb and postgres refuse to run as root; hand them to the postgres OS user.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_owner(), *args],
            capture_output=True,
            text=True,
            # postgres must be able to enter its working directory.
            cwd=self.root,
            env=self._client_env(),
            check=False,
            timeout=timeout,
        )

    def _client_env(self) -> dict[str, str]:
        # A developer's PGHOST/PGSSLMODE/... must not redirect or break our private server.
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def start(self) -> None:
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root but runuser is missing")
        # /tmp rather than pytest's tmp_path: that one is private to root, and the postgres
        # user must reach its data directory and the socket directory.
        self.root = Path(
            tempfile.mkdtemp(prefix="pgtest-", dir="/tmp" if os.geteuid() == 0 else None)
        )
        atexit.register(self.stop)
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        result = self._run(
            str(self.bindir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={self.user}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed:\n{_tail(result.stdout + result.stderr)}")
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            # Throwaway data: durability only costs time.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 32MB",
            *self.conf_lines,
        ]
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write("\n" + "\n".join(conf) + "\n")
        (self.data_dir / "pg_hba.conf").write_text("\n".join(self.hba_lines) + "\n")
        # Another process may grab the port between probing and binding: retry on a new one.
        for _attempt in range(3):
            self.port = _free_port()
            result = self._run(
                str(self.bindir / "pg_ctl"),
                "start",
                "--wait",
                "--timeout=60",
                f"--pgdata={self.data_dir}",
                f"--log={self.log_file}",
                f"--options=-p {self.port}",
            )
            if result.returncode == 0:
                return
        log = self.log_file.read_text() if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"pg_ctl start failed:\n{_tail(result.stdout + result.stderr + log)}")

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            # Immediate: nothing here is worth a clean shutdown checkpoint.
            pg_ctl = str(self.bindir / "pg_ctl")
            self._run(pg_ctl, "stop", "--wait", "--mode=immediate", f"--pgdata={self.data_dir}")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self.port = None

    close = stop

    def create_database(self, name: str) -> str:
        _check_db_name(name)
        env = self._client_env()
        _psql(self.psql, self.url(), f"DROP DATABASE IF EXISTS {name}", env)
        _psql(self.psql, self.url(), f"CREATE DATABASE {name}", env)
        return self.url(name)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExternalServer:
    """A server the caller provides: databases get a random suffix and are dropped on close."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        # psql speaks libpq URLs only: drop SQLAlchemy's "+driver" suffix.
        self.base = parts._replace(scheme=parts.scheme.split("+", 1)[0])
        psql = find_psql(find_bindir())
        if psql is None:
            raise PostgresUnavailable("TEST_DATABASE_URL is set but psql is not installed")
        self.psql = psql
        self.created: list[str] = []
        # Several runs (or xdist workers) may share the server; never reuse a name.
        self.suffix = secrets.token_hex(3)

    def _url(self, database: str) -> str:
        return urlunsplit(self.base._replace(path=f"/{database}"))

    def create_database(self, name: str) -> str:
        name = f"{name}_{self.suffix}"
        _check_db_name(name)
        admin = urlunsplit(self.base)
        _psql(self.psql, admin, f"DROP DATABASE IF EXISTS {name}", os.environ)
        _psql(self.psql, admin, f"CREATE DATABASE {name}", os.environ)
        self.created.append(name)
        return self._url(name)

    def close(self) -> None:
        admin = urlunsplit(self.base)
        while self.created:
            name = self.created.pop()
            _psql(self.psql, admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", os.environ)


def open_server(env: Mapping[str, str] = os.environ) -> DatabaseServer:
    """The server to test against: TEST_DATABASE_URL when set, else a fresh local cluster."""
    if url := env.get("TEST_DATABASE_URL"):
        return ExternalServer(url)
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via pg_config, "
            "/usr/lib/postgresql/*/bin or PATH, and TEST_DATABASE_URL is unset; "
            "install the server (Debian: apt-get install postgresql) or run .ci/run"
        )
    cluster = PostgresCluster(bindir)
    cluster.start()
    return cluster
