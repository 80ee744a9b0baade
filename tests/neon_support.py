"""A local stand-in for Neon: PostgreSQL with TLS and SCRAM, behind a transaction-mode PgBouncer.

The URLs it hands out look like the ones Neon's console gives: postgresql://, a role with a
password, `sslmode=require` (plus `channel_binding=require` on the direct URL). Only the host
differs: loopback addresses, so the "-pooler" host name cannot announce the pooler and the
app is told with DATABASE_TRANSACTION_POOLING instead.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from postgres import (
    PgBouncer,
    PostgresCluster,
    PostgresUnavailable,
    find_bindir,
    self_signed_certificate,
)

ROLE = "neondb_owner"


@dataclass
class NeonEmulation:
    cluster: PostgresCluster
    pooler: PgBouncer
    password: str = field(repr=False)

    def url(self, database: str, *, pooled: bool, params: str) -> str:
        port = self.pooler.port if pooled else self.cluster.port
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{port}/{database}?{params}"

    def pooled_url(self, database: str) -> str:
        """As Neon's pooled string, less channel_binding (PgBouncer cannot pass it on)."""
        return self.url(database, pooled=True, params="sslmode=require")

    def direct_url(self, database: str) -> str:
        return self.url(database, pooled=False, params="sslmode=require&channel_binding=require")

    def create_database(self, name: str) -> None:
        self.cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        self.cluster.execute(f"CREATE DATABASE {name} OWNER {ROLE}")

    def close(self) -> None:
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
            server_port=cluster.port, users={ROLE: password}, tls_cert=cert, tls_key=key
        )
        pooler.start()
    except BaseException:
        cluster.close()
        raise
    return NeonEmulation(cluster, pooler, password)
