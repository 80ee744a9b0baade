"""A local stand-in for Neon: PostgreSQL with TLS and SCRAM, behind a transaction-mode PgBouncer.

Two poolers can stand in front: `pooler`, which keeps no prepared statements (Debian 12's
PgBouncer 1.18, or a newer one with max_prepared_statements = 0), and `tracking_pooler()`,
which tracks them as Neon's PgBouncer does (1.21 or newer: Debian 13, or PGBOUNCER_BIN).

The URLs it hands out look like the ones Neon's console gives: postgresql://, a role with a
password, `sslmode=require` (plus `channel_binding=require` on the direct URL). Only the host
differs: loopback addresses, so the "-pooler" host name cannot announce the pooler and the
app is told with DATABASE_TRANSACTION_POOLING instead.
"""

from __future__ import annotations

import os
import secrets
import selectors
import socket
import subprocess
import threading
from dataclasses import dataclass, field

from postgres import (
    PgBouncer,
    PostgresCluster,
    PostgresUnavailable,
    find_bindir,
    free_port,
    self_signed_certificate,
)

ROLE = "neondb_owner"


@dataclass
class NeonEmulation:
    cluster: PostgresCluster
    pooler: PgBouncer
    password: str = field(repr=False)
    cert: bytes = field(repr=False, default=b"")
    key: bytes = field(repr=False, default=b"")
    _tracking: PgBouncer | None = None

    def url(
        self, database: str, *, pooled: bool, params: str, pooler: PgBouncer | None = None
    ) -> str:
        port = (pooler or self.pooler).port if pooled else self.cluster.port
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{port}/{database}?{params}"

    def pooled_url(self, database: str, pooler: PgBouncer | None = None) -> str:
        """As Neon's pooled string, less channel_binding (PgBouncer cannot pass it on)."""
        return self.url(database, pooled=True, params="sslmode=require", pooler=pooler)

    def tracking_pooler(self) -> PgBouncer:
        """A second pooler that tracks prepared statements, as Neon's does (started once).

        Raises PostgresUnavailable, saying why, when the PgBouncer at hand is older than 1.21.
        """
        if self._tracking is None:
            assert self.cluster.port is not None
            pooler = PgBouncer(
                server_port=self.cluster.port,
                users={ROLE: self.password},
                tls_cert=self.cert,
                tls_key=self.key,
                max_prepared_statements=1000,  # Neon's setting
                admin_user=ROLE,
            )
            pooler.start()
            self._tracking = pooler
        return self._tracking

    def stats(self, pooler: PgBouncer, database: str) -> dict[str, int]:
        """The pooler's SHOW STATS totals for one database, read through its admin console.

        total_query_count counts each exchange that ends in ReadyForQuery: a round trip. On
        a tracking pooler total_bind_count counts executions of named prepared statements
        and total_client_parse_count the statements clients prepared.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        admin = self.url("pgbouncer", pooled=True, params="sslmode=require", pooler=pooler)
        result = subprocess.run(
            [self.cluster.psql, "-X", "-A", "-F", "|", "-P", "footer=off", "-d", admin,
             "-c", "SHOW STATS"],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"SHOW STATS failed: {result.stdout}{result.stderr}")
        header, *rows = result.stdout.splitlines()
        names = header.split("|")
        for row in rows:
            values = dict(zip(names, row.split("|"), strict=True))
            if values["database"] == database:
                return {name: int(value) for name, value in values.items() if value.isdigit()}
        return dict.fromkeys((name for name in names if name.startswith("total_")), 0)

    def direct_url(self, database: str) -> str:
        return self.url(database, pooled=False, params="sslmode=require&channel_binding=require")

    def create_database(self, name: str) -> None:
        self.cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        self.cluster.execute(f"CREATE DATABASE {name} OWNER {ROLE}")

    def close(self) -> None:
        if self._tracking is not None:
            self._tracking.close()
        self.pooler.close()
        self.cluster.close()


def start_neon_emulation() -> NeonEmulation:
    """Start the server and its pooler; raises PostgresUnavailable when they are missing."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found; run .ci/run")
    cert, key = self_signed_certificate()
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(
        bindir,
        conf_lines=[
            "ssl = on",
            "ssl_cert_file = 'server.crt'",
            "ssl_key_file = 'server.key'",
            "password_encryption = 'scram-sha-256'",
            "max_connections = 100",
        ],
        hba_lines=[
            # The superuser sets things up without a password; everyone else needs TLS and
            # SCRAM, as on Neon.
            "local all all trust",
            "host all postgres 127.0.0.1/32 trust",
            "hostssl all all 127.0.0.1/32 scram-sha-256",
        ],
        data_files={"server.crt": cert, "server.key": key},
    )
    cluster.start()
    try:
        cluster.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        assert cluster.port is not None
        pooler = PgBouncer(
            server_port=cluster.port,
            users={ROLE: password},
            tls_cert=cert,
            tls_key=key,
            admin_user=ROLE,
        )
        pooler.start()
    except BaseException:
        cluster.close()
        raise
    return NeonEmulation(cluster, pooler, password, cert, key)


class RoundTripCounter:
    """A loopback TCP proxy in front of a server that counts round trips, TLS and all.

    A round trip starts each time a client speaks after the server has (or first): the
    client then waits for an answer. Bytes pass through untouched, so TLS and channel
    binding work as without it. Use `with`: it stops accepting and closes every relay.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.round_trips = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._closed = False

    def __enter__(self) -> RoundTripCounter:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def via(self, url: str) -> str:
        """`url`, which names the target's port, through this proxy instead."""
        proxied = url.replace(f":{self.target_port}/", f":{self.port}/")
        assert proxied != url, url
        return proxied

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for end in peers:
                end.settimeout(None)
                selector.register(end, selectors.EVENT_READ)
            last = server
            while not self._closed:
                for key, _ in selector.select(timeout=0.5):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                        if data:
                            peers[sock].sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        client.close()
                        server.close()
                        return
                    if sock is client and last is server:
                        with self._lock:
                            self.round_trips += 1
                    last = sock
