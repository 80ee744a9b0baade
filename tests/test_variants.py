"""Variant suites: install each rendered variant with uv, then run its lint, types and tests.

Every check runs the generated project's own tools from its own .venv, exactly as a user
would after `copier copy`; a failure message carries the command and the tail of its output
so that a CI log alone is enough to debug.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import neon_branch
import pytest
from conftest import RenderVariant
from postgres import DatabaseServer, free_port
from template_history import questions
from variants import QUICK_VARIANT, VARIANTS, answers

pytestmark = pytest.mark.variant

# One xdist group per variant: its install, lint and suites share one worker and one render.
PARAMS = [
    pytest.param(
        name,
        id=name,
        marks=[
            pytest.mark.xdist_group(name),
            *([pytest.mark.quick] if name == QUICK_VARIANT else []),
        ],
    )
    for name in VARIANTS
]

OUTPUT_TAIL_LINES = 80
TIMEOUT_SECONDS = 900


@dataclass
class Result:
    args: list[str]
    cwd: Path
    returncode: int
    output: str

    def report(self) -> str:
        tail = "\n".join(self.output.splitlines()[-OUTPUT_TAIL_LINES:])
        return f"$ {shlex.join(self.args)}\n(in {self.cwd}, exit {self.returncode})\n{tail}"


def run(args: list[str], cwd: Path, env: dict[str, str]) -> Result:
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode() if isinstance(exc.output, bytes) else exc.output or ""
        return Result(args, cwd, -1, f"{output}\n[timed out after {exc.timeout}s]")
    return Result(args, cwd, proc.returncode, proc.stdout)


def fail(message: str, result: Result) -> NoReturn:
    # No Python traceback: the command and its output are what explain the failure.
    pytest.fail(f"{message}\n{result.report()}", pytrace=False)


@dataclass
class Project:
    name: str
    path: Path
    env: dict[str, str]
    install: Result

    def tool(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """Run a tool from the variant's venv as installed, never re-syncing it."""
        if self.install.returncode != 0:
            pytest.fail(f"{self.name} did not install; see test_install[{self.name}]")
        # `uv run` would fall back to a same-named tool on PATH (this machine has a global
        # pytest); the variant must bring its own.
        if not (self.path / ".venv" / "bin" / args[0]).is_file():
            pytest.fail(f"{args[0]} is not installed in {self.name}'s .venv: missing dependency?")
        return run(["uv", "run", "--no-sync", *args], self.path, env or self.env)

    def check(self, *args: str, env: dict[str, str] | None = None) -> None:
        result = self.tool(*args, env=env)
        if result.returncode != 0:
            fail(f"{args[0]} failed on {self.name}", result)

    def run_suite(self, env: dict[str, str], *args: str) -> None:
        result = self.tool("pytest", "-q", *args, env=env)
        if result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED:
            fail(f"{self.name} collected no tests; a variant must ship its suite", result)
        if result.returncode != 0:
            fail(f"the test suite of {self.name} failed", result)
        if not re.search(r"\b[1-9]\d* passed\b", result.output):
            fail(f"no test of {self.name} passed", result)


@pytest.fixture(scope="module", params=PARAMS)
def project(
    request: pytest.FixtureRequest, render_variant: RenderVariant, subprocess_env: dict[str, str]
) -> Project:
    name: str = request.param
    path = render_variant(name)
    # Only the variant's own pyproject.toml decides what gets installed, so a dependency it
    # forgets to declare fails here or in its checks, not on a user's machine.
    install = run(["uv", "sync"], path, subprocess_env)
    return Project(name, path, subprocess_env, install)


def test_install(project: Project) -> None:
    if project.install.returncode != 0:
        fail(f"uv sync failed on {project.name}", project.install)


def test_ruff_format(project: Project) -> None:
    project.check("ruff", "format", "--check", ".")


def test_ruff_check(project: Project) -> None:
    project.check("ruff", "check", ".")


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per test worker, shared by the variants that worker checks.

    Variants install the same third-party packages, which are most of mypy's work: with the
    cache, every variant after a worker's first one is checked in a few seconds instead of
    about fifteen. mypy validates each cached module against its source hash, so a variant's
    own modules are always checked afresh. Never shared between workers: mypy's cache is not
    safe for processes running at the same time.
    """
    return tmp_path_factory.mktemp("mypy-cache")


def test_mypy(project: Project, mypy_cache: Path) -> None:
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text())
    configured = "files" in pyproject.get("tool", {}).get("mypy", {})
    files = [] if configured else ["app", "tests"]
    project.check("mypy", *files, env={**project.env, "MYPY_CACHE_DIR": str(mypy_cache)})


# tests/test_hermetic.py runs part of a variant's suite again in a nested pytest (about 4 s
# of CPU). It runs on PostgreSQL, with a sibling database as the stand-in for production, on
# variants that between them take each path it checks (async and sync, Better Auth's
# dev_auth with and without the shared database, no Alembic); elsewhere it is deselected.
HERMETIC_VARIANTS = {
    "async-uuid",
    "sync-int",
    "sync-int-ba-separate-db",
    "sync-int-noauth-noalembic",
}
SKIP_HERMETIC = ("--deselect", "tests/test_hermetic.py")


def test_suite_sqlite(project: Project) -> None:
    project.run_suite(project.env, *SKIP_HERMETIC)


def test_suite_postgres(project: Project, postgres: DatabaseServer) -> None:
    url = postgres.create_database("variant_" + project.name.replace("-", "_"))
    hermetic = () if project.name in HERMETIC_VARIANTS else SKIP_HERMETIC
    project.run_suite({**project.env, "TEST_DATABASE_URL": url}, *hermetic)


# Between them these two declare every dependency a variant can: both drivers, Alembic,
# PyJWT, uuid6, pytest-asyncio and httpx2, with int and uuid keys.
LOWEST_BOUND_VARIANTS = ("async-uuid", "sync-int")


# Same ids and groups as PARAMS, so each reuses its variant's render; never in `-m quick`.
@pytest.mark.parametrize(
    "project",
    [
        pytest.param(name, id=name, marks=pytest.mark.xdist_group(name))
        for name in LOWEST_BOUND_VARIANTS
    ],
    indirect=True,
)
def test_suite_passes_at_the_lowest_declared_bounds(project: Project, tmp_path: Path) -> None:
    """Every lower bound in pyproject.toml is true: the suite passes with each direct
    dependency at the oldest version the variant accepts (a user's resolver may pick it)."""
    # The variant's render, without the venv and lock its own install made.
    copy = tmp_path / project.name
    shutil.copytree(
        project.path,
        copy,
        ignore=shutil.ignore_patterns(".venv", "uv.lock", "*.db", "*_cache", "__pycache__"),
    )
    install = run(["uv", "sync", "--resolution", "lowest-direct"], copy, project.env)
    if install.returncode != 0:
        fail(f"uv sync --resolution lowest-direct failed on {project.name}", install)
    Project(f"{project.name} at its lower bounds", copy, project.env, install).run_suite(
        project.env
    )


# Reads what the app and its packaging make of the text answers, in the variant's own Python.
TEXT_PROBE = """
import json, tomllib
from app.config import Settings
from app.main import app
print(json.dumps({
    "title": app.openapi()["info"]["title"],
    "cors_origins": Settings().cors_origins,
    "description": tomllib.load(open("pyproject.toml", "rb"))["project"]["description"],
    "slug": tomllib.load(open("pyproject.toml", "rb"))["project"]["name"],
}))
"""


def test_text_answers_arrive_as_typed(project: Project) -> None:
    typed: dict[str, Any] = {name: spec.get("default") for name, spec in questions().items()}
    typed.update(answers(project.name))
    result = project.tool("python", "-c", TEXT_PROBE)
    if result.returncode != 0:
        fail(f"the app of {project.name} does not start", result)
    seen = json.loads(result.output.splitlines()[-1])
    assert seen["title"] == typed["project_name"].strip()
    assert seen["description"] == typed["description"].strip()
    assert seen["cors_origins"] == [
        o.strip() for o in typed["cors_origins"].split(",") if o.strip()
    ]
    if "project_slug" in answers(project.name):
        assert seen["slug"] == typed["project_slug"]
    readme = (project.path / "README.md").read_text().splitlines()
    assert readme[:3] == ["# " + typed["project_name"].strip(), "", typed["description"].strip()]


def readme_block(readme: str, heading: str) -> list[str]:
    """The commands of the first bash block under `heading`, comments dropped."""
    section = readme.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert block, f"no bash block under {heading}"
    return [re.sub(r"\s+#.*$", "", line) for line in block.group(1).splitlines() if line.strip()]


def test_documented_migration_commands_work_on_a_fresh_checkout(
    project: Project, tmp_path: Path
) -> None:
    readme = (project.path / "README.md").read_text()
    if not answers(project.name).get("use_alembic"):
        assert "## Migrations" not in readme
        assert not (project.path / "alembic.ini").exists()
        return
    commands = readme_block(readme, "## Migrations")
    revision = [i for i, c in enumerate(commands) if "alembic revision --autogenerate" in c]
    upgrade = [i for i, c in enumerate(commands) if c.endswith("alembic upgrade head")]
    assert revision and upgrade and upgrade[0] < revision[0], commands

    # A fresh checkout: the project's files without its database or caches, sharing its venv.
    checkout = tmp_path / "checkout"
    shutil.copytree(
        project.path,
        checkout,
        ignore=shutil.ignore_patterns(".venv", "*.db", "*_cache", "__pycache__"),
    )
    (checkout / ".venv").symlink_to(project.path / ".venv")
    before = set((checkout / "migrations" / "versions").glob("*.py"))
    for command in commands:
        assert command.startswith("uv run "), command
        args = ["uv", "run", "--no-sync", *shlex.split(command)[2:]]
        result = run(args, checkout, project.env)
        if result.returncode != 0:
            fail(f"the README's `{command}` fails on a fresh checkout of {project.name}", result)
    written = set((checkout / "migrations" / "versions").glob("*.py")) - before
    assert len(written) == 1, "the autogenerate command wrote no revision"
    for check in (["ruff", "format", "--check"], ["ruff", "check"]):
        result = run(["uv", "run", "--no-sync", *check, *map(str, written)], checkout, project.env)
        if result.returncode != 0:
            fail(f"the new revision fails {' '.join(check)}", result)


# ---- The Neon branch workflow's steps, on a local copy of a populated database ---------------

# The job's steps differ only by use_alembic (Better Auth adds its users to the parent here,
# and Neon Auth one setting, checked in test_workflows.py): the first two variants, async-uuid
# with Alembic and without. A prefix of PARAMS, because pytest keys a module fixture's
# instance by its index in the parameter list: any other subset would render and install
# these variants a second time.
NEON_BRANCH_PARAMS = PARAMS[:2]
assert [answers(str(p.id))["use_alembic"] for p in NEON_BRANCH_PARAMS] == [True, False]
REVISION = re.compile(r'^revision: str = "([^"]+)"', re.MULTILINE)
BETTER_AUTH_ID_SQL = {"text": "text", "uuid": "uuid", "serial": "integer"}


def populate_parent(url: str, variant: dict[str, Any]) -> None:
    """What a parent branch holds before the pull request: Better Auth's users where the API
    shares their database, and a table of someone else's with rows."""
    neon_branch.psql(
        url,
        "CREATE TABLE customer_note (id serial PRIMARY KEY, body text NOT NULL);"
        "INSERT INTO customer_note (body) VALUES ('first'), ('second'), ('third');",
    )
    if variant.get("use_better_auth", True) and variant.get("better_auth_shared_db", True):
        id_type = BETTER_AUTH_ID_SQL[variant.get("better_auth_id_type", "text")]
        ids = {"text": "'u1', 'u2'", "uuid": "gen_random_uuid(), gen_random_uuid()"}
        first, second = ids.get(id_type, "1, 2").split(", ")
        neon_branch.psql(
            url,
            f'CREATE TABLE "user" (id {id_type} PRIMARY KEY, name text NOT NULL,'
            ' email text NOT NULL UNIQUE, "emailVerified" boolean NOT NULL DEFAULT false,'
            ' image text, "createdAt" timestamptz NOT NULL DEFAULT now(),'
            ' "updatedAt" timestamptz NOT NULL DEFAULT now());'
            f"INSERT INTO \"user\" (id, name, email) VALUES ({first}, 'Ada', 'ada@example.com'),"
            f" ({second}, 'Bob', 'bob@example.com');",
        )


def snapshot(url: str) -> dict[str, str]:
    return {
        "notes": neon_branch.psql(
            url, "SELECT string_agg(body, ',' ORDER BY id) FROM customer_note"
        ),
        "users": neon_branch.psql(
            url, "SELECT coalesce(string_agg(email, ',' ORDER BY email), '') FROM \"user\""
        )
        if neon_branch.psql(url, "SELECT to_regclass('\"user\"') IS NOT NULL") == "t"
        else "",
        "todo": neon_branch.psql(url, "SELECT to_regclass('todo') IS NOT NULL"),
    }


@pytest.mark.parametrize("project", NEON_BRANCH_PARAMS, indirect=True)
def test_neon_branch_steps_migrate_and_start_on_a_copy(
    project: Project, postgres: DatabaseServer, tmp_path: Path
) -> None:
    variant = answers(project.name)
    parent = postgres.create_database("neon_parent_" + project.name.replace("-", "_"))
    populate_parent(parent, variant)
    before = snapshot(parent)
    branch = neon_branch.branch_from(parent, "neon_pr_" + project.name.replace("-", "_"))
    known = {
        "github.event.pull_request.number": "7",
        "vars.NEON_PROJECT_ID": "local-project",
        "secrets.NEON_API_KEY": "local-key",
        # Neon's direct and pooled URLs of the branch; here both reach the copy directly.
        "steps.branch.outputs.db_url": branch,
        "steps.branch.outputs.db_url_pooled": branch,
    }
    port = free_port()
    steps = neon_branch.run_job(
        project.path,
        "preview",
        base_env=project.env,
        known=known,
        env_overrides={"APP_PORT": str(port)},
        runner_temp=tmp_path / "runner",
    )
    log = "\n".join(step.report() for step in steps)
    print(log)  # the steps' own output, for the record (-s)
    failed = [step for step in steps if step.returncode != 0]
    assert not failed, f"a step of the Neon branch workflow failed:\n{log}"

    names = [step.name for step in steps]
    assert names[0] == "uv sync --locked" and names[1] == "Expiry", names
    expires = datetime.fromisoformat(steps[1].outputs["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=47) < expires - datetime.now(UTC) <= timedelta(hours=48)
    ready = next(step for step in steps if "/health/ready" in step.name)
    assert '{"status":"ok"}' in ready.output
    with pytest.raises(OSError):  # the step stopped the app it started
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    after = snapshot(branch)
    assert after == {**before, "todo": "t"}, "the copy lost rows, or has no todo table"
    assert snapshot(parent) == before, "the steps changed the parent, not only the copy"
    if variant["use_alembic"]:
        assert any(step.name.endswith("(alembic check)") for step in steps)
        # `alembic check` above fails unless the copy is at head: here, which revision.
        versions = (project.path / "migrations" / "versions").glob("*.py")
        revisions = {m[1] for v in versions for m in re.finditer(REVISION, v.read_text())}
        assert neon_branch.psql(branch, "SELECT version_num FROM alembic_version") in revisions
