"""The generated app on Neon-style URLs, through a real TLS + SCRAM PostgreSQL and PgBouncer.

For each session style the rendered project is served by uvicorn from its own venv and
loaded by 50 concurrent clients: through the transaction-mode pooler (before and after an
app restart that leaves the pooler's server connections in place), through the direct URL
with `channel_binding=require`, and across a pooler outage, where readiness must answer 503
and then recover without a restart. Through a pooler that tracks prepared statements, as
Neon's does (PgBouncer 1.21+; PGBOUNCER_BIN names one when the installed one is older), the
app keeps its statement cache: one round trip per route, counted by the pooler itself. A
migration that changes a column's type under warm statement caches fails no request.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import app_server
import pytest
import test_variants as variant_checks
from conftest import RenderVariant
from neon_support import NeonEmulation, RoundTripCounter, start_neon_emulation
from postgres import PgBouncer, PostgresUnavailable

pytestmark = pytest.mark.neon

STYLES = [
    pytest.param(style, id=style, marks=pytest.mark.xdist_group(f"neon-{style}"))
    for style in ("sync", "async")
]
CLIENTS = 50
ROUNDS = 2  # each round is 6 requests per client: 600 requests per load


def variant(style: str) -> str:
    # Auth and Alembic off: what is tested here is the database layer, and the same app with
    # auth would need a token service.
    return f"{style}-uuid-noauth-noalembic"


@pytest.fixture(scope="session")
def neon() -> Iterator[NeonEmulation]:
    try:
        emulation = start_neon_emulation()
    except PostgresUnavailable as exc:
        pytest.skip(f"Neon emulation unavailable: {exc}")
    try:
        yield emulation
    finally:
        emulation.close()


@dataclass
class Project:
    style: str
    path: Path
    env: dict[str, str]


@pytest.fixture(scope="module", params=STYLES)
def project(
    request: pytest.FixtureRequest, render_variant: RenderVariant, subprocess_env: dict[str, str]
) -> Project:
    style: str = request.param
    path = render_variant(variant(style))
    # The app alone: uvicorn comes with fastapi[standard], the dev tools are not needed.
    sync = variant_checks.run(["uv", "sync", "--no-dev"], path, subprocess_env)
    if sync.returncode != 0:
        variant_checks.fail(f"uv sync failed for {style}", sync)
    return Project(style, path, subprocess_env)


class AppServer(app_server.AppServer):
    """The rendered app under uvicorn (one worker), as a subprocess on a loopback port."""

    uvicorn_options = ("--no-access-log",)

    def __init__(self, project: Project, database: dict[str, str]) -> None:
        super().__init__(project.path, {**project.env, **database})

    def request(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if data and response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data.decode(errors="replace")

    def request_json(self, method: str, path: str, body: Any, status: int) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            got, data = self.request(conn, method, path, body)
        finally:
            conn.close()
        assert got == status, f"{method} {path}: {got} {data}"
        return data

    def get(self, path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            return self.request(conn, "GET", path)
        finally:
            conn.close()


@contextmanager
def serving(project: Project, database: dict[str, str]) -> Iterator[AppServer]:
    server = AppServer(project, database)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(server: AppServer, number: int) -> list[str]:
    """One client's requests over one keep-alive connection; returns what went wrong."""
    errors: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def expect(status: int, method: str, path: str, body: Any = None) -> Any:
        try:
            got, data = server.request(conn, method, path, body)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{method} {path}: {exc!r}")
            conn.close()
            return None
        if got != status:
            errors.append(f"{method} {path}: {got} {data}")
            return None
        return data

    try:
        for round_ in range(ROUNDS):
            todo = expect(201, "POST", "/api/todos", {"title": f"client {number} round {round_}"})
            if todo is None:
                continue
            item = f"/api/todos/{todo['id']}"
            fetched = expect(200, "GET", item)
            if fetched is not None and fetched != todo:
                errors.append(f"GET {item} returned {fetched}, created {todo}")
            expect(200, "PATCH", item, {"description": "patched"})
            toggled = expect(200, "POST", f"{item}/toggle")
            if toggled is not None and toggled["completed"] is not True:
                errors.append(f"toggle of {item} gave {toggled}")
            expect(200, "GET", "/api/todos?limit=20")
            expect(204, "DELETE", item)
    finally:
        conn.close()
    return errors


def load(server: AppServer) -> None:
    """CLIENTS concurrent clients, 6 requests per round each; every answer must be right."""
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(lambda n: _client(server, n), range(CLIENTS)))
    errors = [error for result in results for error in result]
    if errors:
        shown = "\n".join(errors[:15])
        pytest.fail(
            f"{len(errors)} of {CLIENTS * ROUNDS * 6} requests failed, e.g.:\n{shown}\n"
            f"--- app log ---\n{server.output()}",
            pytrace=False,
        )
    assert server.get("/health/ready") == (200, {"status": "ok"})


def _database(neon: NeonEmulation, project: Project, name: str) -> str:
    database = f"{name}_{project.style}"
    neon.create_database(database)
    return database


def test_pooled_url_under_load_and_after_a_restart(project: Project, neon: NeonEmulation) -> None:
    database = _database(neon, project, "pooled")
    assert neon.pooler.port is not None
    with RoundTripCounter(neon.pooler.port) as counter:
        env = {
            "DATABASE_URL": counter.via(neon.pooled_url(database)),
            "DATABASE_URL_UNPOOLED": neon.direct_url(database),
            # This pooler cannot keep prepared statements: pooler-safe mode.
            "DATABASE_TRANSACTION_POOLING": "true",
        }
        with serving(project, env) as server:
            load(server)
            counted = round_trips(per_route(server, counter))
        # PgBouncer keeps its server connections, with whatever the first app left on them.
        with serving(project, env) as server:
            load(server)

    # psycopg sends an unnamed statement and its execution at once; asyncpg without its
    # cache waits for the statement's description before it executes it.
    expected = 1.0 if project.style == "sync" else 2.0
    assert counted == dict.fromkeys(ROUTES, expected)


def test_direct_url_with_channel_binding_under_load(project: Project, neon: NeonEmulation) -> None:
    database = _database(neon, project, "direct")
    assert neon.cluster.port is not None
    with (
        RoundTripCounter(neon.cluster.port) as counter,
        serving(project, {"DATABASE_URL": counter.via(neon.direct_url(database))}) as server,
    ):
        load(server)
        counted = round_trips(per_route(server, counter))

    # The drivers' statement caches: one round trip per route in both styles.
    assert counted == dict.fromkeys(ROUTES, 1.0)


def _ready_status(server: AppServer, want: int, within: float) -> tuple[int, float]:
    start = time.monotonic()
    status = 0
    while time.monotonic() - start < within:
        status, _ = server.get("/health/ready")
        if status == want:
            break
        time.sleep(0.2)
    return status, time.monotonic() - start


def test_readiness_follows_an_outage_without_a_restart(
    project: Project, neon: NeonEmulation
) -> None:
    database = _database(neon, project, "outage")
    env = {"DATABASE_URL": neon.pooled_url(database), "DATABASE_TRANSACTION_POOLING": "true"}
    with serving(project, env) as server:
        assert server.get("/health/ready")[0] == 200
        port = neon.pooler.port
        neon.pooler.stop()
        try:
            status, waited = _ready_status(server, 503, within=15)
            assert status == 503, f"readiness said {status} with the pooler down"
            # Connection refused: the retries' pauses (0.2 s + 0.5 s) and no more.
            assert waited < 5
            assert server.get("/health") == (200, {"status": "ok"})
        finally:
            neon.pooler.start(port=port)
        status, waited = _ready_status(server, 200, within=15)
        assert status == 200, f"readiness still {status} {waited:.1f}s after the pooler came back"
        load(server)


def test_pgbouncer_true_in_the_url_is_enough(project: Project, neon: NeonEmulation) -> None:
    # A self-hosted PgBouncer: no "-pooler" in the host name, no setting, only the URL.
    database = _database(neon, project, "pgbouncer")
    env = {"DATABASE_URL": f"{neon.pooled_url(database)}&pgbouncer=true"}
    with serving(project, env) as server:
        load(server)
    with serving(project, env) as server:
        load(server)


API = "/api/todos"
# Requests per route before counting (psycopg prepares a statement at its 5th execution),
# and counted.
WARM = 6
COUNTED = 4
ROUTES = (
    "GET /todos",
    "GET /todos/{id}",
    "POST /todos",
    "PATCH /todos/{id}",
    "POST /todos/{id}/toggle",
    "DELETE /todos/{id}",
)


def per_route(
    server: AppServer,
    counter: RoundTripCounter,
    stats: Callable[[], dict[str, int]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per request of each route, one keep-alive client at a time: the app's round trips to
    the database (`counter` stands between them) and, from a tracking pooler's `stats`,
    executions of named prepared statements ("bind") and statements prepared ("parse")."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def send(method: str, path: str, body: Any, status: int) -> Any:
        got, data = server.request(conn, method, path, body)
        assert got == status, f"{method} {path}: {got} {data}\n{server.output()}"
        return data

    def snapshot() -> dict[str, int]:
        seen = {"round_trips": counter.round_trips}
        if stats is not None:
            totals = stats()
            seen |= {"bind": totals["total_bind_count"]}
            seen |= {"parse": totals["total_client_parse_count"]}
        return seen

    total = WARM + COUNTED
    ids = [send("POST", API, {"title": f"counted {n}"}, 201)["id"] for n in range(2 * total)]
    first = f"{API}/{ids[0]}"
    requests: dict[str, Callable[[int], Any]] = {
        "GET /todos": lambda n: send("GET", f"{API}?limit=20", None, 200),
        "GET /todos/{id}": lambda n: send("GET", first, None, 200),
        "POST /todos": lambda n: send("POST", API, {"title": f"more {n}"}, 201),
        "PATCH /todos/{id}": lambda n: send("PATCH", first, {"description": f"{n}"}, 200),
        "POST /todos/{id}/toggle": lambda n: send("POST", f"{first}/toggle", None, 200),
        "DELETE /todos/{id}": lambda n: send("DELETE", f"{API}/{ids[total + n]}", None, 204),
    }
    counts: dict[str, dict[str, float]] = {}
    try:
        for route in ROUTES:
            for n in range(WARM):
                requests[route](n)
            before = snapshot()
            for n in range(WARM, total):
                requests[route](n)
            after = snapshot()
            counts[route] = {name: (after[name] - before[name]) / COUNTED for name in after}
    finally:
        conn.close()
    return counts


def round_trips(counts: dict[str, dict[str, float]]) -> dict[str, float]:
    return {route: count["round_trips"] for route, count in counts.items()}


@pytest.fixture
def tracking_pooler(neon: NeonEmulation) -> PgBouncer:
    try:
        return neon.tracking_pooler()
    except PostgresUnavailable as exc:
        pytest.skip(f"NOT RUN, no PgBouncer that tracks prepared statements: {exc}")


def test_a_tracking_pooler_keeps_the_statement_cache(
    project: Project, neon: NeonEmulation, tracking_pooler: PgBouncer
) -> None:
    # Neon's setup: the pooled URL with nothing that asks for pooler-safe mode.
    database = _database(neon, project, "tracking")
    assert tracking_pooler.port is not None
    with RoundTripCounter(tracking_pooler.port) as counter:
        env = {
            "DATABASE_URL": counter.via(neon.pooled_url(database, tracking_pooler)),
            "DATABASE_URL_UNPOOLED": neon.direct_url(database),
        }
        with serving(project, env) as server:
            load(server)
            counts = per_route(server, counter, lambda: neon.stats(tracking_pooler, database))
        # The pooler's server connections keep the first process's statements.
        with serving(project, env) as server:
            load(server)

    # One round trip, which executes a statement prepared earlier; none prepared again.
    one = {"round_trips": 1.0, "bind": 1.0, "parse": 0.0}
    assert counts == dict.fromkeys(ROUTES, one), counts


# Clients and rounds of requests before and after the migration; each pooled connection
# runs each statement more than 5 times first, so psycopg has prepared it too.
PLAN_CLIENTS = 8
PLAN_ROUNDS = 8
PLAN_PATHS = ("direct", "pooler-safe", "tracking-pooler")
WIDEN_TITLE = "ALTER TABLE todo ALTER COLUMN title TYPE text"


def _reading_client(server: AppServer, todo: dict[str, Any], rounds: int) -> list[str]:
    """List, read and rename one todo `rounds` times; returns every wrong answer."""
    wrong: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    item = f"{API}/{todo['id']}"
    try:
        for round_ in range(rounds):
            title = f"{todo['id']} round {round_}"
            for method, path, body, expected in [
                ("GET", f"{API}?limit=5", None, None),
                ("GET", item, None, todo["title"]),
                ("PATCH", item, {"title": title}, title),
            ]:
                status, data = server.request(conn, method, path, body)
                if status != 200 or (expected is not None and data["title"] != expected):
                    wrong.append(f"{method} {path}: {status} {str(data)[:300]}")
            todo["title"] = title
    except (OSError, http.client.HTTPException) as exc:
        wrong.append(repr(exc))
    finally:
        conn.close()
    return wrong


def _readers(server: AppServer, todos: list[dict[str, Any]], rounds: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=len(todos)) as pool:
        results = pool.map(lambda todo: _reading_client(server, todo, rounds), todos)
        return [item for result in results for item in result]


@pytest.mark.parametrize("path", PLAN_PATHS)
def test_a_migration_that_changes_a_column_type_fails_no_request(
    project: Project, neon: NeonEmulation, path: str
) -> None:
    """Warm statement caches on several pooled connections, then the type of a column they
    return changes, as a migration does while the old release serves: no request fails."""
    database = _database(neon, project, f"plans_{path.replace('-', '_')}")
    env = {"DATABASE_URL": neon.direct_url(database)}
    if path == "pooler-safe":
        env = {"DATABASE_URL": neon.pooled_url(database), "DATABASE_TRANSACTION_POOLING": "true"}
    elif path == "tracking-pooler":
        try:
            env = {"DATABASE_URL": neon.pooled_url(database, neon.tracking_pooler())}
        except PostgresUnavailable as exc:
            pytest.skip(f"NOT RUN, no PgBouncer that tracks prepared statements: {exc}")
    with serving(project, env) as server:
        titles = [{"title": f"client {number}"} for number in range(PLAN_CLIENTS)]
        todos = [server.request_json("POST", API, body, 201) for body in titles]
        warm = _readers(server, todos, PLAN_ROUNDS)
        assert not warm, warm[:5]
        neon.cluster.execute(WIDEN_TITLE, database)
        wrong = _readers(server, todos, PLAN_ROUNDS)
        log = server.output()

    assert not wrong, f"{len(wrong)} wrong answers after the migration, e.g. {wrong[:3]}\n{log}"
    assert "Traceback" not in log


OUTAGE_CLIENTS = 10
OUTAGE_SECONDS = 3
JSON_HEADERS = {"Content-Type": "application/json"}


def _outage_client(server: AppServer, stop_at: float) -> list[str]:
    """Create, read and list todos until `stop_at`; returns every answer that is not allowed.

    Allowed: the right status, or 503 with Retry-After. One keep-alive connection throughout:
    a handled 503 must not make uvicorn close it.
    """
    wrong: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        while time.monotonic() < stop_at and len(wrong) < 5:
            for method, path, body, ok in [
                ("POST", "/api/todos", {"title": "during the outage"}, 201),
                ("GET", "/api/todos?limit=5", None, 200),
            ]:
                try:
                    payload = json.dumps(body) if body else None
                    conn.request(method, path, body=payload, headers=JSON_HEADERS)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    wrong.append(f"{method} {path}: {exc!r}")
                    conn.close()
                    continue
                retry_after = response.getheader("Retry-After")
                if response.status == 503 and retry_after:
                    wrong.append("503")  # counted, not an error
                elif response.status != ok:
                    wrong.append(f"{method} {path}: {response.status} {data[:200]!r}")
    finally:
        conn.close()
    return wrong


def test_a_database_outage_mid_load_is_503_then_recovers(
    project: Project, neon: NeonEmulation
) -> None:
    database = _database(neon, project, "stopped")
    # The direct URL: PostgreSQL itself goes away, not a pooler in front of it.
    env = {"DATABASE_URL": neon.direct_url(database), "DATABASE_CONNECT_RETRIES": "0"}
    with serving(project, env) as server:
        assert server.get("/health/ready")[0] == 200
        stop_at = time.monotonic() + 3 * OUTAGE_SECONDS
        with ThreadPoolExecutor(max_workers=OUTAGE_CLIENTS) as pool:
            running = [pool.submit(_outage_client, server, stop_at) for _ in range(OUTAGE_CLIENTS)]
            time.sleep(OUTAGE_SECONDS)
            neon.cluster.pause()
            try:
                time.sleep(OUTAGE_SECONDS)
            finally:
                neon.cluster.resume()
            answers = [item for future in running for item in future.result()]
        errors = [item for item in answers if item != "503"]
        log = server.output()

        assert not errors, f"{len(errors)} wrong answers, e.g. {errors[:5]}\n{log}"
        assert answers.count("503") > 0, "no request met the outage"
        assert "Traceback" not in log
        # Recovered, without a restart.
        load(server)


def test_prepared_statements_through_the_pooler_are_503_with_a_hint(
    project: Project, neon: NeonEmulation
) -> None:
    # The operator's mistake: the pooler drops prepared statements, the app keeps them.
    database = _database(neon, project, "prepared")
    env = {"DATABASE_URL": neon.pooled_url(database), "DATABASE_TRANSACTION_POOLING": "false"}
    # One app process: its pooled connections each name their statements from 1, so they
    # meet each other's names on the pooler's server connections. (A second process would
    # also meet them at startup, before any request: it could not start.)
    with serving(project, env) as server:
        stop_at = time.monotonic() + OUTAGE_SECONDS
        with ThreadPoolExecutor(max_workers=OUTAGE_CLIENTS) as pool:
            running = [pool.submit(_outage_client, server, stop_at) for _ in range(OUTAGE_CLIENTS)]
            answers = [item for future in running for item in future.result()]
        log = server.output()
    errors = [item for item in answers if item != "503"]

    assert not errors, f"{len(errors)} wrong answers, e.g. {errors[:5]}\n{log}"
    assert "Traceback" not in log
    if project.style == "async":
        # asyncpg's named statements fail every time here; psycopg's only now and then.
        assert answers.count("503") > 0
    if "503" in answers:
        assert "set DATABASE_TRANSACTION_POOLING=true" in log


# With the sync style's tests, so that no third worker starts an emulation of its own.
@pytest.mark.xdist_group("neon-sync")
def test_pooler_emulation_really_drops_prepared_statements(neon: NeonEmulation) -> None:
    """The stand-in must break what Neon-unaware settings do, or the tests above prove little.

    Client A prepares a statement; client B then holds that server connection in a
    transaction, so A's next statement runs on another one, where the name is unknown.
    """
    database = "control"
    neon.create_database(database)  # a pool of its own: no idle server connection yet
    url = neon.pooled_url(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def psql(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["psql", "-X", "-q", "-d", url, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )

    client_a = psql("-f", "-")
    assert client_a.stdin is not None
    client_a.stdin.write("PREPARE s AS SELECT 1;\nSELECT 'prepared';\n")
    client_a.stdin.flush()
    _wait_for_output(client_a, "prepared")
    client_b = psql("-c", "BEGIN; SELECT 'holding', pg_sleep(3); COMMIT;")
    time.sleep(1)  # B is connected and inside its transaction by now
    output_a, _ = client_a.communicate("EXECUTE s;\n", timeout=60)
    client_b.communicate(timeout=60)

    assert 'prepared statement "s" does not exist' in output_a


def _wait_for_output(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            return
    pytest.fail(f"psql ended before printing {text!r}")
