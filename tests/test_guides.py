"""The guides in docs/ are performed, as written, on a rendered async and sync project.

Each step of a guide is a fenced block right after a marker comment that says what to do
with it:

    <!-- guide: edit FILE -->      a ```diff block: " " context, "-" removed, "+" added lines
    <!-- guide: create FILE -->    a new file
    <!-- guide: append FILE -->    code added at the end of a module (after two blank lines)
    <!-- guide: run -->            commands, run one by one in the project
    <!-- guide: expect GLOB -->    lines the (one) file matching GLOB must contain
    <!-- guide: check -->          the checks that must pass once the guides are done

A trailing `session=async` or `session=sync` limits a step to that session style. A guide
that drifts from the generated code (the lines to edit are gone, a command fails, the
project no longer passes its checks) fails here. Both guides go into one project per
session style, so this costs two renders and installs; the project's checks run once, at
the end, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RenderVariant
from postgres import DatabaseServer
from test_variants import Result, fail, run
from variants import answers

pytestmark = pytest.mark.variant

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDES = ["add-a-field.md", "add-a-resource.md"]
MARKER = re.compile(
    r"^<!-- guide: (?P<op>[a-z]+)(?P<args>[^>]*?) -->\n```[a-z]*\n(?P<body>.*?)\n```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Step:
    guide: str
    op: str
    target: str
    conditions: dict[str, str]
    body: str

    def where(self) -> str:
        return f"docs/{self.guide}, `{self.op} {self.target}`".rstrip()


def steps_of(name: str) -> list[Step]:
    text = (DOCS / name).read_text()
    steps = []
    for match in MARKER.finditer(text):
        words = match["args"].split()
        conditions = dict(word.split("=", 1) for word in words if "=" in word)
        targets = [word for word in words if "=" not in word]
        steps.append(Step(name, match["op"], " ".join(targets), conditions, match["body"]))
    # A marker whose block did not parse would silently skip a step.
    assert len(steps) == text.count("<!-- guide:"), f"docs/{name}: a marker without its block"
    return steps


def applies(step: Step, session_mode: str) -> bool:
    return step.conditions.get("session", session_mode) == session_mode


def edit(path: Path, step: Step) -> None:
    lines = step.body.splitlines()
    bad = [line for line in lines if line[:1] not in {" ", "-", "+", ""}]
    assert not bad, f"{step.where()}: not a diff line: {bad[0]!r}"
    old = "".join(line[1:] + "\n" for line in lines if line[:1] in {" ", "-", ""})
    new = "".join(line[1:] + "\n" for line in lines if line[:1] in {" ", "+", ""})
    text = path.read_text()
    found = text.count(old)
    if found != 1:
        pytest.fail(
            f"{step.where()}: the lines it changes occur {found} times in the generated "
            f"file, not once; the guide no longer matches the code:\n{old}",
            pytrace=False,
        )
    path.write_text(text.replace(old, new))


def shell(command: str, project: Path, env: dict[str, str]) -> Result:
    return run(["bash", "-c", command], project, env)


def perform(step: Step, project: Path, env: dict[str, str], checks: list[str]) -> None:
    path = project / step.target
    if step.op == "edit":
        edit(path, step)
    elif step.op == "create":
        assert not path.exists(), f"{step.where()}: the file exists already"
        path.write_text(step.body + "\n")
    elif step.op == "append":
        path.write_text(path.read_text().rstrip("\n") + "\n\n\n" + step.body + "\n")
    elif step.op == "expect":
        matches = sorted(project.glob(step.target))
        assert len(matches) == 1, f"{step.where()}: {len(matches)} files match"
        text = matches[0].read_text()
        for line in step.body.splitlines():
            assert line in text.splitlines(), f"{step.where()}: no line {line!r} in\n{text}"
    elif step.op in {"run", "check"}:
        commands = [line for line in step.body.splitlines() if line and not line.startswith("#")]
        if step.op == "check":
            checks.extend(command for command in commands if command not in checks)
            return
        for command in commands:
            result = shell(command, project, env)
            if result.returncode != 0:
                fail(f"{step.where()}: `{command}` failed", result)
    else:
        pytest.fail(f"{step.where()}: unknown operation {step.op!r}")


def test_every_step_has_a_known_operation() -> None:
    # Parsed without a project: a typo in a marker fails fast, not after an install.
    for guide in GUIDES:
        for step in steps_of(guide):
            assert step.op in {"edit", "create", "append", "run", "expect", "check"}, step
            assert set(step.conditions) <= {"session"}, step
            assert (step.op in {"run", "check"}) == (not step.target), step


BAD_REVISION = '''"""Adds a required column without a default: fails on a table with rows."""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {down!r}


def upgrade() -> None:
    op.add_column("todo", sa.Column("weight", sa.Integer(), nullable=False))


def downgrade() -> None:
    op.drop_column("todo", "weight")
'''


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(name, marks=pytest.mark.xdist_group(f"guides-{name}"))
        for name in ("async-uuid", "sync-uuid")
    ],
)
def test_guides_as_written(
    variant: str,
    render_variant: RenderVariant,
    subprocess_env: dict[str, str],
    postgres: DatabaseServer,
    tmp_path: Path,
) -> None:
    project = render_variant(variant)
    env = {**subprocess_env, "MYPY_CACHE_DIR": str(tmp_path / "mypy-cache")}
    install = run(["uv", "sync"], project, env)
    if install.returncode != 0:
        fail(f"uv sync failed on {variant}", install)
    db = variant.replace("-", "_")

    # The first migration on a PostgreSQL database without Better Auth's tables: one line
    # that names the fix, no traceback.
    empty = postgres.create_database(f"guides_{db}_empty")
    first = shell("uv run alembic upgrade head", project, {**env, "DATABASE_URL": empty})
    assert first.returncode != 0, first.report()
    assert "Traceback" not in first.output, first.report()
    failed = [line for line in first.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1, first.report()
    assert "npx auth@latest migrate" in failed[0], failed[0]
    assert "uv run python -m scripts.dev_auth" in failed[0], failed[0]

    session_mode = answers(variant)["session_mode"]
    checks: list[str] = []
    for guide in GUIDES:
        for step in steps_of(guide):
            if applies(step, session_mode):
                perform(step, project, env, checks)

    assert checks, "the guides name no checks"
    test_db = postgres.create_database(f"guides_{db}")
    backends = {"SQLite": env, "PostgreSQL": {**env, "TEST_DATABASE_URL": test_db}}
    for backend, backend_env in backends.items():
        for command in checks:
            if backend == "PostgreSQL" and "pytest" not in shlex.split(command):
                continue  # lint and types do not depend on the database
            result = shell(command, project, backend_env)
            if result.returncode != 0:
                fail(f"after the guides, `{command}` fails on {backend} ({variant})", result)

    # The suite's migration walk stops a revision that cannot run on a populated table.
    heads = shell("uv run alembic heads", project, env).output
    head = re.findall(r"^(\w+) \(head\)", heads, re.MULTILINE)
    assert len(head) == 1, heads
    bad = project / "migrations" / "versions" / "9999_bad.py"
    bad.write_text(BAD_REVISION.format(down=head[0]))
    walk = shell("uv run pytest -q tests/test_migrations.py -k with_rows", project, env)
    assert walk.returncode != 0, walk.report()
    assert "upgrade to 9999 fails on a database with rows" in walk.output, walk.report()
