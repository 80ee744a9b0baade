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
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import RenderVariant
from postgres import DatabaseServer
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

    def run_suite(self, env: dict[str, str]) -> None:
        result = self.tool("pytest", "-q", env=env)
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


def test_suite_sqlite(project: Project) -> None:
    project.run_suite(project.env)


def test_suite_postgres(project: Project, postgres: DatabaseServer) -> None:
    url = postgres.create_database("variant_" + project.name.replace("-", "_"))
    project.run_suite({**project.env, "TEST_DATABASE_URL": url})


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
