"""Shared fixtures: render a variant with real copier, a PostgreSQL server, a clean env."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres import DatabaseServer, PostgresUnavailable, open_server
from pytest_copie.plugin import Copie
from variants import answers

REPO_ROOT = Path(__file__).resolve().parent.parent

# With a dirty working tree, copier commits the changes inside its temporary clone of this
# repo, and that commit needs an identity even on a machine that has none configured.
for _var, _value in {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.invalid",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.invalid",
}.items():
    os.environ.setdefault(_var, _value)

RenderVariant = Callable[[str], Path]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    # Each variant's tests must share a worker (xdist_group + --dist loadgroup). xdist tags
    # grouped ids with an "@group" suffix, which pytest 9.2 silently drops (pytest-xdist#1386),
    # and every worker would then render and install the same variants: stop instead.
    if node.config.getvalue("dist") != "loadgroup":
        return
    ungrouped = [i for i in ids if i.startswith("tests/test_variants.py::") and "@" not in i]
    if ungrouped:
        raise pytest.UsageError(
            f"--dist loadgroup did not group {ungrouped[0]}: this pytest and pytest-xdist "
            "do not work together (pytest-xdist#1386); keep pytest below 9.2"
        )


@pytest.fixture(scope="session")
def render_variant(copie_session: Copie) -> RenderVariant:
    """Render a variant from this repo's working tree (HEAD plus uncommitted changes)."""

    def render(name: str) -> Path:
        result = copie_session.copy(extra_answers=answers(name), template_dir=REPO_ROOT)
        if result.exception is not None or result.project_dir is None:
            exc = result.exception
            detail = "".join(traceback.format_exception(exc)) if exc else "no project dir"
            pytest.fail(f"copier failed to render {name!r} (exit {result.exit_code}):\n{detail}")
        return result.project_dir

    return render


@pytest.fixture(scope="session")
def postgres() -> Iterator[DatabaseServer]:
    """TEST_DATABASE_URL's server, else a private cluster (one per xdist worker, on demand)."""
    try:
        server = open_server()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """Environment for uv and the generated projects' own tools.

    Each variant must install from its own pyproject.toml into its own .venv: so no inherited
    virtualenv or project environment, no Python downloads, and none of our pytest or
    database settings leaking into the generated project's test run.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "TEST_DATABASE_URL"}
        and not key.startswith(("PYTEST_", "DATABASE_URL"))
    }
    # `uv run` falls back to PATH for commands missing from the project's venv; our own venv
    # must not be there to lend a tool (ruff, mypy, pytest) the variant forgot to declare.
    if sys.prefix != sys.base_prefix:
        own_bin = str(Path(sys.prefix) / "bin")
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != own_bin)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env
