"""The rendered API against a real Better Auth server: Node, `better-auth` 1.7, PostgreSQL.

The generated projects' own suites test auth against a stand-in (their tests/better_auth.py).
Here the tokens, the JWKS, the tables and the deletions come from Better Auth itself, as
pinned by tests/better_auth_server/package-lock.json: users sign up through its HTTP API,
its own migrator creates its tables, and the rendered app runs under uvicorn on the same
PostgreSQL database (shared-database variants) after its Alembic migrations.

The `neon` variants (better_auth_host=neon) run against Better Auth 1.4.18 set up as Neon
Auth runs it (tests/better_auth_neon_server/): tables in the neon_auth schema, routes under
/neondb/auth, keys at /neondb/auth/.well-known/jwks.json, iss = aud = the origin.

Each variant renders and installs once (one xdist group); the tests of Better Auth's own
options (algorithm, JWKS path, key rotation, issuer) run on one of them, each against a
Better Auth of its own on a fresh database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import app_server
import pytest
import test_variants as variant_checks
from conftest import RenderVariant
from postgres import DatabaseServer, find_bindir, find_psql
from real_better_auth import (
    NEON_BASE_PATH,
    NEON_SOURCE,
    Account,
    BetterAuthServer,
    NodeUnavailable,
    Response,
    find_node,
    install,
    request,
)
from variants import answers

pytestmark = pytest.mark.better_auth

# Every better_auth_id_type, shared database on and off, both session styles, both hosts;
# Alembic on.
VARIANTS = [
    "async-uuid",
    "async-int-ba-uuid",
    "sync-uuid-ba-serial",
    "sync-int-ba-separate-db",
    "async-uuid-neon",
    "sync-int-neon",
]
# The preview-branch test runs on this one.
NEON_VARIANT = "sync-int-neon"
NEON_JWKS_PATH = "/.well-known/jwks.json"
# Neon Auth's tables: Better Auth's, the admin plugin's columns, the organization plugin's.
NEON_AUTH_TABLES = {
    "user",
    "session",
    "account",
    "verification",
    "jwks",
    "organization",
    "member",
    "invitation",
}
# Better Auth's own options are checked on this one: a separate database lets each test give
# Better Auth a fresh database of its own while the app keeps one.
OPTIONS_VARIANT = "sync-int-ba-separate-db"
# advanced.database.generateId for each better_auth_id_type.
GENERATE_ID = {"text": None, "uuid": "uuid", "serial": "serial"}


def group(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(f"better-auth-{name}")


# --- Node and the Better Auth server ----------------------------------------------------


@dataclass(frozen=True)
class NodeServer:
    node: str
    directory: Path
    # Better Auth 1.4.18 as Neon Auth runs it.
    neon_directory: Path


def is_neon(variant: str) -> bool:
    return answers(variant).get("better_auth_host") == "neon"


@pytest.fixture(scope="session")
def better_auth_install() -> NodeServer:
    """The installed server (npm ci, cached across runs); a skip without Node, but not in CI."""
    try:
        node, npm = find_node()
    except NodeUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the real Better Auth tests cannot run: {exc}")
        pytest.skip(f"real Better Auth server unavailable: {exc}")
    return NodeServer(node, install(npm), install(npm, NEON_SOURCE))


def better_auth(
    server: NodeServer, database_url: str, variant: str, **options: Any
) -> BetterAuthServer:
    """A Better Auth whose generateId matches the variant's better_auth_id_type."""
    if is_neon(variant):
        return BetterAuthServer(
            server.neon_directory,
            server.node,
            database_url,
            jwks_path=NEON_JWKS_PATH,
            base_path=NEON_BASE_PATH,
            **options,
        )
    id_type = answers(variant).get("better_auth_id_type", "text")
    return BetterAuthServer(
        server.directory,
        server.node,
        database_url,
        generate_id=GENERATE_ID[id_type],
        **options,
    )


# --- The rendered app ---------------------------------------------------------------------


@dataclass
class Project:
    name: str
    path: Path
    env: dict[str, str]

    @property
    def shared_db(self) -> bool:
        return bool(answers(self.name).get("better_auth_shared_db", True))

    @property
    def neon(self) -> bool:
        return is_neon(self.name)

    @property
    def users_table(self) -> str:
        return 'neon_auth."user"' if self.neon else '"user"'

    def alembic(self, database_url: str, *args: str) -> variant_checks.Result:
        alembic = str(self.path / ".venv" / "bin" / "alembic")
        env = {**self.env, "DATABASE_URL": database_url}
        return variant_checks.run([alembic, *args], self.path, env)

    def migrate(self, database_url: str) -> None:
        result = self.alembic(database_url, "upgrade", "head")
        if result.returncode != 0:
            variant_checks.fail(f"alembic upgrade head failed on {self.name}", result)


@pytest.fixture(scope="session")
def installed(
    render_variant: RenderVariant, subprocess_env: dict[str, str]
) -> Callable[[str], Project]:
    """Render and install a variant once per worker (its tests share an xdist group)."""
    projects: dict[str, Project] = {}

    def get(name: str) -> Project:
        if name not in projects:
            path = render_variant(name)
            # The app alone: uvicorn and alembic are runtime dependencies.
            sync = variant_checks.run(["uv", "sync", "--no-dev"], path, subprocess_env)
            if sync.returncode != 0:
                variant_checks.fail(f"uv sync failed on {name}", sync)
            projects[name] = Project(name, path, subprocess_env)
        return projects[name]

    return get


class App(app_server.AppServer):
    """The rendered app under uvicorn on a free loopback port."""

    def __init__(self, project: Project, env: dict[str, str]) -> None:
        super().__init__(project.path, {**project.env, **env})

    def explain(self, response: Response) -> str:
        """What went wrong, for a failure message: the answer and the app's log."""
        if response.status >= 500:
            # uvicorn logs the traceback after it has sent the 500.
            time.sleep(0.5)
        return f"{response.status} {response.body!r}\n--- app log ---\n{self.output()}"

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return request(self.port, method, path, body=body, headers=headers)

    def expect(
        self, status: int, method: str, path: str, token: str | None, body: Any = None
    ) -> Any:
        response = self.call(method, path, token, body)
        if response.status != status:
            failure = f"{method} {path}: expected {status}, got {self.explain(response)}"
            pytest.fail(failure, pytrace=False)
        return response.body


@contextmanager
def serving(project: Project, env: dict[str, str]) -> Iterator[App]:
    app = App(project, env)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def app_env(database_url: str, auth: BetterAuthServer, **extra: str) -> dict[str, str]:
    if auth.base_path == NEON_BASE_PATH:
        # What Neon injects: the base URL alone; keys, issuer and audience follow from it.
        return {"DATABASE_URL": database_url, "NEON_AUTH_BASE_URL": auth.url + NEON_BASE_PATH}
    return {"DATABASE_URL": database_url, "BETTER_AUTH_URL": auth.url, **extra}


def query(database_url: str, sql: str) -> str:
    """One value from PostgreSQL, through psql."""
    psql = find_psql(find_bindir())
    assert psql is not None, "psql is needed (the postgres fixture found a server without it?)"
    result = subprocess.run(
        [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-c", sql],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"psql failed on {sql!r}:\n{result.stderr}"
    return result.stdout.strip()


def neon_auth_checksum(database_url: str) -> dict[str, str]:
    """A digest of every neon_auth table's definition and rows, by table."""
    tables = query(
        database_url,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'neon_auth'",
    ).split(",")
    digests = {}
    for table in tables:
        definition = query(
            database_url,
            "SELECT md5(string_agg(d, E'\\n' ORDER BY d)) FROM ("
            "SELECT format('%s %s %s %s', column_name, data_type, is_nullable, column_default) d "
            "FROM information_schema.columns "
            f"WHERE table_schema = 'neon_auth' AND table_name = '{table}' "
            "UNION ALL SELECT conname || pg_get_constraintdef(oid) FROM pg_constraint "
            f"WHERE conrelid = 'neon_auth.\"{table}\"'::regclass "
            "UNION ALL SELECT indexdef FROM pg_indexes "
            f"WHERE schemaname = 'neon_auth' AND tablename = '{table}') s",
        )
        rows = query(
            database_url,
            f"SELECT count(*) || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f'FROM neon_auth."{table}" t',
        )
        digests[table] = f"{definition} {rows}"
    return digests


def sql_literal(value: str) -> str:
    # Ids from Better Auth: random strings, uuids or numbers; nothing that needs escaping.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value), value
    return f"'{value}'"


def jose_header(token: str) -> dict[str, Any]:
    segment = token.split(".", 1)[0]
    header: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


# --- One stack per variant: Better Auth, its tables, the app's migrations, the app ---------


@dataclass
class Stack:
    project: Project
    auth: BetterAuthServer
    app: App
    database_url: str  # the app's
    auth_database_url: str  # Better Auth's: the same one with a shared database
    # neon_auth's tables and rows before and after the app's migrations (neon variants).
    neon_auth_before: dict[str, str]
    neon_auth_after: dict[str, str]


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, id=name, marks=group(name)) for name in VARIANTS],
)
def stack(
    request: pytest.FixtureRequest,
    installed: Callable[[str], Project],
    postgres: DatabaseServer,
    better_auth_install: NodeServer,
) -> Iterator[Stack]:
    project = installed(request.param)
    slug = project.name.replace("-", "_")
    auth_url = postgres.create_database(f"ba_{slug}")
    app_url = auth_url if project.shared_db else postgres.create_database(f"app_{slug}")
    # Better Auth's migrator first: with a shared database, todo.owner_id references "user".
    with better_auth(better_auth_install, auth_url, project.name) as auth:
        before: dict[str, str] = {}
        if project.neon:
            # Rows in user, account, session and jwks before the app's migrations run.
            auth.token(auth.sign_up("Early"))
            before = neon_auth_checksum(auth_url)
        project.migrate(app_url)
        after = neon_auth_checksum(auth_url) if project.neon else {}
        with serving(project, app_env(app_url, auth)) as app:
            yield Stack(project, auth, app, app_url, auth_url, before, after)


def test_migrations_on_better_auths_tables_leave_alembic_check_clean(stack: Stack) -> None:
    result = stack.project.alembic(stack.database_url, "check")
    if result.returncode != 0 or "No new upgrade operations detected" not in result.output:
        variant_checks.fail(f"alembic check is not clean on {stack.project.name}", result)
    schema = "neon_auth" if stack.project.neon else "public"
    tables = query(
        stack.auth_database_url,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        f"WHERE schemaname = '{schema}'",
    ).split(",")
    assert {"user", "session", "account", "verification", "jwks"} <= set(tables)
    if stack.project.neon:
        assert set(tables) == NEON_AUTH_TABLES
        # The app's migrations left every neon_auth table, and every row in it, as it was.
        assert stack.neon_auth_before == stack.neon_auth_after
        assert set(stack.neon_auth_after) == NEON_AUTH_TABLES
    if stack.project.shared_db:
        # The foreign key Alembic created points at the table Better Auth created.
        target = query(
            stack.database_url,
            "SELECT confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = 'todo'::regclass AND contype = 'f'",
        )
        assert target == stack.project.users_table


def test_each_user_sees_only_their_own_todos(stack: Stack) -> None:
    auth, app = stack.auth, stack.app
    alice, bob = auth.sign_up("Alice"), auth.sign_up("Bob")
    # Both ways a frontend gets a JWT: the token endpoint and get-session's header.
    alice_token, bob_token = auth.token(alice), auth.session_token(bob)
    for token in (alice_token, bob_token, auth.session_token(alice), auth.token(bob)):
        assert jose_header(token)["alg"] == "EdDSA"

    mine = app.expect(201, "POST", "/api/todos", alice_token, {"title": "Buy milk"})
    app.expect(
        201,
        "POST",
        "/api/todos/bulk",
        alice_token,
        [{"title": "Walk the dog", "description": "twice"}, {"title": "File taxes"}],
    )
    theirs = app.expect(201, "POST", "/api/todos", bob_token, {"title": "Bob's secret"})
    item = f"/api/todos/{mine['id']}"

    assert app.expect(200, "GET", item, alice_token) == mine
    patched = app.expect(200, "PATCH", item, alice_token, {"description": "oat"})
    assert patched["description"] == "oat"
    assert app.expect(200, "POST", f"{item}/toggle", alice_token)["completed"] is True
    done = app.expect(200, "GET", "/api/todos?completed=true", alice_token)
    assert [todo["id"] for todo in done] == [mine["id"]]
    found = app.expect(200, "GET", "/api/todos?q=DOG", alice_token)
    assert [todo["title"] for todo in found] == ["Walk the dog"]
    page = app.expect(200, "GET", "/api/todos?limit=2&offset=1", alice_token)
    assert len(page) == 2

    titles = {todo["title"] for todo in app.expect(200, "GET", "/api/todos", alice_token)}
    assert titles == {"Buy milk", "Walk the dog", "File taxes"}
    assert [t["title"] for t in app.expect(200, "GET", "/api/todos", bob_token)] == ["Bob's secret"]

    # Another user's todo is missing, not forbidden, on every route.
    other = f"/api/todos/{theirs['id']}"
    app.expect(404, "GET", other, alice_token)
    app.expect(404, "PATCH", other, alice_token, {"title": "mine now"})
    app.expect(404, "POST", f"{other}/toggle", alice_token)
    app.expect(404, "DELETE", other, alice_token)
    assert app.expect(200, "GET", other, bob_token) == theirs

    app.expect(204, "DELETE", item, alice_token)
    app.expect(404, "GET", item, alice_token)
    app.expect(401, "GET", "/api/todos", None)
    assert app.expect(200, "GET", "/health/ready", None) == {"status": "ok"}


def test_me_shows_better_auths_user(stack: Stack) -> None:
    account = stack.auth.sign_up("Carol")
    me = stack.app.expect(200, "GET", "/api/me", stack.auth.token(account))
    user = account.user
    assert str(me["id"]) == account.id
    assert (me["email"], me["name"]) == (user["email"], user["name"])
    if stack.project.shared_db:
        # Read from Better Auth's "user" row, camelCase columns included.
        assert (me["email_verified"], me["image"]) == (user["emailVerified"], user["image"])
        assert set(me) == {"id", "email", "name", "email_verified", "image"}
    else:
        assert set(me) == {"id", "email", "name"}


def test_deleting_a_user_in_better_auth(stack: Stack) -> None:
    auth, app = stack.auth, stack.app
    dave, erin = auth.sign_up("Dave"), auth.sign_up("Erin")
    dave_token, erin_token = auth.token(dave), auth.token(erin)
    app.expect(201, "POST", "/api/todos/bulk", dave_token, [{"title": "a"}, {"title": "b"}])
    app.expect(201, "POST", "/api/todos", erin_token, {"title": "c"})

    def todos_of(account: Account) -> int:
        owner = sql_literal(account.id)
        return int(
            query(stack.database_url, f"SELECT count(*) FROM todo WHERE owner_id::text = {owner}")
        )

    assert todos_of(dave) == 2
    auth.delete_user(dave)
    users = query(
        stack.auth_database_url,
        f"SELECT count(*) FROM {stack.project.users_table} WHERE id::text = {sql_literal(dave.id)}",
    )
    assert users == "0"
    assert todos_of(erin) == 1

    if stack.project.shared_db:
        # ON DELETE CASCADE: Better Auth's delete took the todos with it.
        assert todos_of(dave) == 0
        assert app.expect(200, "GET", "/api/todos", dave_token) == []
        # The token stays valid for its 15 minutes, but its user is gone.
        response = app.call("POST", "/api/todos", dave_token, {"title": "after deletion"})
        assert response.status == 401, app.explain(response)
        assert "no longer exists" in response.body["detail"]
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    else:
        # Another database: the API cannot see the deletion. The todos stay, and the token
        # works until it expires (15 minutes by default).
        assert todos_of(dave) == 2
        app.expect(201, "POST", "/api/todos", dave_token, {"title": "after deletion"})


# --- Better Auth's own options: algorithm, JWKS path, rotation, issuer ---------------------


@dataclass
class OptionsApp:
    project: Project
    database_url: str


@pytest.fixture(scope="module")
def options_app(installed: Callable[[str], Project], postgres: DatabaseServer) -> OptionsApp:
    project = installed(OPTIONS_VARIANT)
    url = postgres.create_database("app_better_auth_options")
    project.migrate(url)
    return OptionsApp(project, url)


@pytest.fixture
def fresh_database(postgres: DatabaseServer, request: pytest.FixtureRequest) -> str:
    """An empty database for one test's own Better Auth."""
    # Readable, and unique even where two parametrized names share their first characters.
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:32]
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    return postgres.create_database(f"ba_{name}_{digest}")


@group(OPTIONS_VARIANT)
@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_another_algorithm_needs_auth_algorithms(
    algorithm: str,
    options_app: OptionsApp,
    better_auth_install: NodeServer,
    fresh_database: str,
) -> None:
    project = options_app.project
    with better_auth(
        better_auth_install, fresh_database, project.name, algorithm=algorithm
    ) as auth:
        token = auth.token(auth.sign_up("Frank"))
        assert jose_header(token)["alg"] == algorithm
        assert {key["alg"] for key in auth.jwks()["keys"]} == {algorithm}
        env = app_env(options_app.database_url, auth)
        with serving(project, env) as app:
            body = app.expect(401, "POST", "/api/todos", token, {"title": "refused"})
            assert body["detail"] == "Token algorithm is not accepted"
        with serving(project, {**env, "AUTH_ALGORITHMS": f"EdDSA,{algorithm}"}) as app:
            app.expect(201, "POST", "/api/todos", token, {"title": "accepted"})
            assert len(app.expect(200, "GET", "/api/todos", token)) == 1


@group(OPTIONS_VARIANT)
def test_jwks_at_another_path_through_auth_jwks_url(
    options_app: OptionsApp, better_auth_install: NodeServer, fresh_database: str
) -> None:
    project = options_app.project
    path = "/.well-known/jwks.json"  # where Neon Auth publishes its keys
    with better_auth(better_auth_install, fresh_database, project.name, jwks_path=path) as auth:
        token = auth.token(auth.sign_up("Grace"))
        assert auth.jwks()["keys"], "no key at the configured path"
        # Better Auth moved the endpoint: the default one is gone.
        assert auth.call("GET", "/jwks").status == 404
        env = app_env(options_app.database_url, auth)
        with serving(project, env) as app:
            # The app looks at /api/auth/jwks, finds nothing, and cannot check any token.
            body = app.expect(503, "POST", "/api/todos", token, {"title": "no keys"})
            assert "signing keys" in body["detail"]
        with serving(project, {**env, "AUTH_JWKS_URL": auth.jwks_url}) as app:
            app.expect(201, "POST", "/api/todos", token, {"title": "keys found"})


@group(OPTIONS_VARIANT)
def test_issuer_and_audience_are_better_auths_base_url(
    options_app: OptionsApp, better_auth_install: NodeServer, fresh_database: str
) -> None:
    project = options_app.project
    with better_auth(better_auth_install, fresh_database, project.name) as auth:
        token = auth.token(auth.sign_up("Heidi"))
        # Same server, other name: keys are found, but iss and aud name 127.0.0.1.
        elsewhere = auth.url.replace("127.0.0.1", "localhost")
        env = {
            "DATABASE_URL": options_app.database_url,
            "BETTER_AUTH_URL": elsewhere,
            "AUTH_JWKS_URL": auth.jwks_url,
        }
        with serving(project, env) as app:
            body = app.expect(401, "POST", "/api/todos", token, {"title": "refused"})
            assert body["detail"] == "Token was issued by another issuer"
        # Both settings: the generated suite checks each one alone against its stand-in.
        with serving(project, {**env, "AUTH_ISSUER": auth.url, "AUTH_AUDIENCE": auth.url}) as app:
            app.expect(201, "POST", "/api/todos", token, {"title": "accepted"})


ROTATION_SECONDS = 2
GRACE_SECONDS = 4


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(0.2)


@group(OPTIONS_VARIANT)
def test_key_rotation_without_restarting_the_app(
    options_app: OptionsApp, better_auth_install: NodeServer, fresh_database: str
) -> None:
    project = options_app.project
    with better_auth(
        better_auth_install,
        fresh_database,
        project.name,
        rotation_seconds=ROTATION_SECONDS,
        grace_seconds=GRACE_SECONDS,
    ) as auth:
        account = auth.sign_up("Ivan")
        env = app_env(
            options_app.database_url,
            auth,
            # Short cache and refetch interval so the test need not wait minutes.
            AUTH_JWKS_CACHE_SECONDS="1",
            AUTH_JWKS_REFETCH_SECONDS="0.5",
        )
        with serving(project, env) as app:
            old = auth.token(account)
            old_kid = jose_header(old)["kid"]
            app.expect(200, "GET", "/api/todos", old)

            # Once the key is older than rotationInterval, the next token brings a new key.
            time.sleep(ROTATION_SECONDS + 0.5)
            new = auth.token(account)
            new_kid = jose_header(new)["kid"]
            assert new_kid != old_kid
            listed = {key["kid"] for key in auth.jwks()["keys"]}
            assert {old_kid, new_kid} <= listed
            app.expect(200, "GET", "/api/todos", new)
            # Still listed during the grace period: the old token keeps working.
            app.expect(200, "GET", "/api/todos", old)

            # After the grace period Better Auth drops the key, and the app follows.
            wait_until(
                lambda: old_kid not in {key["kid"] for key in auth.jwks()["keys"]},
                GRACE_SECONDS + 10,
                "Better Auth to stop listing the old key",
            )
            time.sleep(1.5)  # past AUTH_JWKS_CACHE_SECONDS
            body = app.expect(401, "GET", "/api/todos", old)
            assert body["detail"] == "Token is signed with an unknown key"
            # That refusal fetched the key set; Better Auth mints the next key only when it
            # signs the next token, so the app can fetch it once AUTH_JWKS_REFETCH_SECONDS
            # have passed since.
            time.sleep(0.6)
            app.expect(200, "GET", "/api/todos", auth.token(account))


# --- Neon Auth on branches ----------------------------------------------------------------


@group(NEON_VARIANT)
def test_a_branch_without_neon_auth_gets_one_clear_error(
    installed: Callable[[str], Project], postgres: DatabaseServer
) -> None:
    project = installed(NEON_VARIANT)
    result = project.alembic(postgres.create_database("app_no_neon_auth"), "upgrade", "head")
    assert result.returncode != 0, result.output
    assert "enable Neon Auth on this branch" in result.output
    assert "Traceback" not in result.output


@group(NEON_VARIANT)
def test_a_preview_branchs_token_is_refused_by_production(
    installed: Callable[[str], Project],
    postgres: DatabaseServer,
    better_auth_install: NodeServer,
) -> None:
    """A Neon branch copies the users and the signing keys: only `iss` tells them apart."""
    project = installed(NEON_VARIANT)
    production = postgres.create_database("neon_production")
    secret = "one-secret-for-both-branches-" + "x" * 16
    with better_auth(better_auth_install, production, project.name, secret=secret) as auth:
        account = auth.sign_up("Judy")
        production_kid = jose_header(auth.token(account))["kid"]
    project.migrate(production)
    # What Neon's branching does: a copy of the database, auth schema, users and keys included.
    preview = postgres.create_database("neon_preview")
    names = [urlsplit(url).path.lstrip("/") for url in (production, preview)]
    scratch = postgres.create_database("neon_scratch")
    query(scratch, f"DROP DATABASE {names[1]}")
    query(scratch, f"CREATE DATABASE {names[1]} TEMPLATE {names[0]}")
    with (
        better_auth(better_auth_install, production, project.name, secret=secret) as auth,
        better_auth(better_auth_install, preview, project.name, secret=secret) as branch,
        serving(project, app_env(production, auth)) as app,
    ):
        token = branch.token(branch.sign_in(account.email, account.password))
        # Same user, same key: the signature checks out against production's keys.
        assert jose_header(token)["kid"] == production_kid
        body = app.expect(401, "POST", "/api/todos", token, {"title": "from the preview"})
        assert body["detail"] == "Token was issued by another issuer"
        production_token = auth.token(auth.sign_in(account.email, account.password))
        app.expect(201, "POST", "/api/todos", production_token, {"title": "from production"})
