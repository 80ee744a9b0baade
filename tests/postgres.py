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
import signal
import socket
import subprocess
import tempfile
import time
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
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


def _write_private(path: Path, content: bytes) -> None:
    """Write a file only its owner may read; the postgres user owns it when we are root."""
    path.write_bytes(content)
    path.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


def _check_db_name(name: str) -> None:
    # Names are interpolated into SQL; keep them to plain identifiers that need no quoting.
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")


class PostgresCluster:
    """A private cluster on a free loopback port, removed on stop.

    `conf_lines` are appended to postgresql.conf and `hba_lines`, when given, replace the
    default trust rules; `data_files` (a certificate and key, say) go into the data
    directory, where relative paths in `conf_lines` find them.
    """

    def __init__(
        self,
        bindir: Path,
        *,
        conf_lines: Sequence[str] = (),
        hba_lines: Sequence[str] | None = None,
        data_files: Mapping[str, bytes] | None = None,
        user: str = "postgres",
    ) -> None:
        self.bindir = bindir
        self.conf_lines = list(conf_lines)
        # Written into the data directory, private to the server (TLS keys must be 0600).
        self.data_files = dict(data_files or {})
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
        for name, content in self.data_files.items():
            _write_private(self.data_dir / name, content)
        # Another process may grab the port between probing and binding: retry on a new one.
        for _attempt in range(3):
            self.port = free_port()
            result = self._pg_ctl_start()
            if result.returncode == 0:
                return
        log = self.log_file.read_text() if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"pg_ctl start failed:\n{_tail(result.stdout + result.stderr + log)}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        """Start the server on `self.port` and wait for it (60 s at most)."""
        return self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "--wait",
            "--timeout=60",
            f"--pgdata={self.data_dir}",
            f"--log={self.log_file}",
            f"--options=-p {self.port}",
        )

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

    def pause(self) -> None:
        """Shut the server down as an outage would, keeping its data and port for `resume`."""
        pg_ctl = str(self.bindir / "pg_ctl")
        result = self._run(pg_ctl, "stop", "--wait", "--mode=fast", f"--pgdata={self.data_dir}")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed:\n{_tail(result.stdout + result.stderr)}")

    def resume(self) -> None:
        result = self._pg_ctl_start()
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{_tail(result.stdout + result.stderr)}")

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run SQL as the superuser."""
        _psql(self.psql, self.url(database), sql, self._client_env())

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


def self_signed_certificate(common_name: str = "localhost") -> tuple[bytes, bytes]:
    """A throwaway TLS certificate and key (PEM) for 127.0.0.1 and localhost, via openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PostgresUnavailable("openssl not found (Debian: apt-get install openssl)")
    with tempfile.TemporaryDirectory(prefix="tls-") as tmp:
        cert, key = Path(tmp) / "server.crt", Path(tmp) / "server.key"
        result = subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN={common_name}",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(key), "-out", str(cert),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"openssl failed:\n{_tail(result.stdout + result.stderr)}")
        return cert.read_bytes(), key.read_bytes()


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def find_pgbouncer() -> str | None:
    """PGBOUNCER_BIN when set (a newer build, say), else the installed one."""
    if executable := os.environ.get("PGBOUNCER_BIN"):
        return executable
    executable = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return executable if Path(executable).is_file() else None


def pgbouncer_version(executable: str) -> tuple[int, ...]:
    """(1, 18, 0) from "PgBouncer 1.18.0"; () when it does not say."""
    result = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    found = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", result.stdout)
    return tuple(int(part) for part in found.groups() if part) if found else ()


# The first PgBouncer that tracks protocol-level named prepared statements.
TRACKING_PGBOUNCER = (1, 21)


class PgBouncer:
    """PgBouncer on a loopback port, in front of one PostgreSQL server.

    Clients must use TLS and SCRAM (`users` maps names to passwords); PgBouncer reaches the
    server over TLS too. Transaction pooling by default, as Neon's pooler. With
    `max_prepared_statements` (1.21 and newer) it tracks protocol-level prepared statements,
    as Neon's does; at 0, or on Debian 12's 1.18, it keeps none across transactions.
    `admin_user` may read `SHOW STATS`. Without a certificate (the benchmarks) it speaks
    plain TCP on both sides and trusts the user names listed. Like postgres, it refuses to
    run as root: it runs as the postgres user then.
    """

    def __init__(
        self,
        *,
        server_port: int,
        users: Mapping[str, str],
        tls_cert: bytes | None,
        tls_key: bytes | None,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        max_prepared_statements: int = 0,
        admin_user: str | None = None,
    ) -> None:
        executable = find_pgbouncer()
        if executable is None:
            raise PostgresUnavailable("pgbouncer not found (Debian: apt-get install pgbouncer)")
        self.executable = executable
        self.version = pgbouncer_version(executable)
        if max_prepared_statements and self.version < TRACKING_PGBOUNCER:
            raise PostgresUnavailable(
                f"PgBouncer {'.'.join(map(str, self.version))} ({executable}) cannot track "
                "prepared statements (1.21 or newer can); PGBOUNCER_BIN names another"
            )
        self.max_prepared_statements = max_prepared_statements
        self.admin_user = admin_user
        self.server_port = server_port
        self.users = dict(users)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.root: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self, root: Path, port: int) -> str:
        tls = [
            "auth_type = scram-sha-256",
            "client_tls_sslmode = require",
            f"client_tls_cert_file = {root / 'server.crt'}",
            f"client_tls_key_file = {root / 'server.key'}",
            "server_tls_sslmode = require",
        ]
        return "\n".join(
            [
                "[databases]",
                f"* = host=127.0.0.1 port={self.server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                f"auth_file = {root / 'userlist.txt'}",
                f"pool_mode = {self.pool_mode}",
                f"default_pool_size = {self.pool_size}",
                "max_client_conn = 1000",
                *(tls if self.tls_cert is not None else ["auth_type = trust"]),
                f"logfile = {root / 'pgbouncer.log'}",
                *self._version_lines(),
                "",
            ]
        )

    def _version_lines(self) -> list[str]:
        lines = [f"admin_users = {self.admin_user}"] if self.admin_user else []
        if self.version >= TRACKING_PGBOUNCER:
            # Said even when 0: newer releases track 200 statements unless told otherwise.
            lines.append(f"max_prepared_statements = {self.max_prepared_statements}")
        return lines

    def start(self, port: int | None = None) -> None:
        """Start listening; on `port` to come back where clients expect it after a stop."""
        if self.root is None:
            self.root = Path(
                tempfile.mkdtemp(prefix="pgbouncer-", dir="/tmp" if os.geteuid() == 0 else None)
            )
            atexit.register(self.close)
            if os.geteuid() == 0:
                shutil.chown(self.root, user="postgres", group="postgres")
            if self.tls_cert is not None and self.tls_key is not None:
                _write_private(self.root / "server.crt", self.tls_cert)
                _write_private(self.root / "server.key", self.tls_key)
            users = "".join(f'"{name}" "{password}"\n' for name, password in self.users.items())
            _write_private(self.root / "userlist.txt", users.encode())
        for _attempt in range(1 if port else 3):
            self.port = port or free_port()
            _write_private(self.root / "pgbouncer.ini", self._config(self.root, self.port).encode())
            as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            # A session of its own, so that stop() signals runuser and pgbouncer together.
            self.process = subprocess.Popen(
                [*as_owner, self.executable, str(self.root / "pgbouncer.ini")],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if _wait_for_port(self.port, 20, self.process):
                return
            self._terminate()
        log = self.root / "pgbouncer.log"
        raise RuntimeError(
            f"pgbouncer did not start:\n{_tail(log.read_text() if log.exists() else '')}"
        )

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM: immediate shutdown, every client and server connection dropped.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        """Stop listening, keeping the configuration for start(port=...)."""
        self._terminate()

    def close(self) -> None:
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def log(self) -> str:
        path = self.root / "pgbouncer.log" if self.root else None
        return path.read_text(errors="replace") if path and path.exists() else ""
