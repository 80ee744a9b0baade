"""`copier update` as users run it, on a synthetic two-release history of this template.

The history (see template_history.py) is the working tree tagged OLD_TAG, then a release
NEW_TAG that does what template releases do: fixes a line in a file users also edit, adds a
file, and adds a question with a default. Projects are copied from OLD_TAG, committed, edited
like a user would, and updated with `copier update --defaults` (never --trust):

a) user edits survive, and a template change two lines away from one merges without conflict;
b) with no user edits, an update gives exactly a fresh copy of the new release, per variant;
c) `copier update -r :current: -d KEY=VALUE` adds and removes exactly the files a fresh copy
   with the new answer has, and the result still installs, lints, type-checks and passes;
d) a fresh project, once synced and checked by its own CI steps, leaves nothing but uv.lock
   for the user to commit, so `copier update` is not refused as dirty.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_variants as variant_checks
import yaml
from postgres import DatabaseServer
from template_history import (
    NEW_TAG,
    OLD_TAG,
    commit_all,
    conflicts,
    copy_project,
    files,
    git,
    is_ignored,
    questions,
    recorded_answers,
    snapshot_template,
    update_project,
)
from variants import QUICK_VARIANT, VARIANTS, answers

pytestmark = pytest.mark.update

# ---- The next release, as the synthetic history makes it ---------------------------------

NEW_QUESTION = "support_email"
NEW_QUESTION_DEFAULT = "support@example.com"
ADDED_FILE = "SUPPORT.md"

# In .gitignore (a plain file, rendered as is), the release adds a line after line 4 and the
# user adds one after line 6: two untouched lines between them, so the user's hunk no longer
# applies as is and copier falls back to a three-way merge, which must succeed.
TEMPLATE_IGNORE_AT, TEMPLATE_IGNORE = 4, ".hypothesis/\n"
USER_IGNORE_AT, USER_IGNORE = 6, ".envrc\n"

# In the Dockerfile the release bumps the uv image; the user raises the Python version three
# lines above it.
UV_IMAGE = re.compile(r"(?m)^(FROM ghcr\.io/astral-sh/uv:)\S+( AS uv)$")
NEW_UV_IMAGE = r"\g<1>99.9\g<2>"
PYTHON_ARG = re.compile(r"(?m)^ARG PYTHON_VERSION=\S+$")
USER_PYTHON_ARG = "ARG PYTHON_VERSION=3.13"

# In app/main.py the release adds a route module: one more name in `from app.routes import
# (...)`, one name per line, right above the closing parenthesis, below which the user adds
# an import of their own. Written on one line, the two changes would touch and conflict.
ROUTES_IMPORT_LAST = "    todos,\n"
RELEASED_ROUTE_NAME = "    version,\n"
RELEASED_ROUTER_LINE = "    app.include_router(version.router)\n"
VERSION_ROUTE = '''"""The deployed version: a route the next release adds."""

from fastapi import APIRouter

router = APIRouter(tags=["version"])


@router.get("/version")
async def read_version() -> dict[str, str]:
    """The version of the API."""
    return {"version": "0.2.0"}
'''


def release_next_version(template: Path) -> None:
    """Turn the OLD_TAG snapshot into NEW_TAG: a fix, a new file, a new question."""
    gitignore = template / "template" / ".gitignore"
    lines = gitignore.read_text().splitlines(keepends=True)
    assert len(lines) > USER_IGNORE_AT + 2, "template/.gitignore is too short for this test"
    lines.insert(TEMPLATE_IGNORE_AT, TEMPLATE_IGNORE)
    gitignore.write_text("".join(lines))

    dockerfile = template / "template" / "Dockerfile.jinja"
    text, count = UV_IMAGE.subn(NEW_UV_IMAGE, dockerfile.read_text())
    assert count == 1, "the Dockerfile's uv stage changed: update UV_IMAGE"
    dockerfile.write_text(text)

    assert NEW_QUESTION not in questions(template), f"{NEW_QUESTION} exists: pick another name"
    copier_yml = template / "copier.yml"
    copier_yml.write_text(
        copier_yml.read_text().rstrip("\n")
        + f"\n\n{NEW_QUESTION}:\n"
        + "  type: str\n"
        + "  help: Where users of the service ask for help\n"
        + f"  default: {NEW_QUESTION_DEFAULT}\n"
    )
    (template / "template" / f"{ADDED_FILE}.jinja").write_text(
        "# Support\n\nWrite to {{ " + NEW_QUESTION + " }}.\n"
    )

    (template / "template" / "app" / "routes" / "version.py").write_text(VERSION_ROUTE)
    main = template / "template" / "app" / "main.py.jinja"
    lines = main.read_text().splitlines(keepends=True)
    start = lines.index("from app.routes import (\n")
    end = lines.index(")\n", start)
    assert lines[end - 1] == ROUTES_IMPORT_LAST, "the routes import changed: adapt this test"
    lines.insert(end, RELEASED_ROUTE_NAME)
    returns = lines.index("    return app\n")
    lines.insert(returns, RELEASED_ROUTER_LINE)
    main.write_text("".join(lines))
    commit_all(template, "Next release: a fix, a new file, a new question, a new route", NEW_TAG)


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template repository, tagged OLD_TAG (working tree) and NEW_TAG (next release)."""
    template = snapshot_template(tmp_path_factory.mktemp("history") / "template", OLD_TAG)
    release_next_version(template)
    return template


# ---- What a user does to a project ----------------------------------------------------------

STATS_ROUTE = '''\
"""Counts for the dashboard: a route the user added after generating the project."""

from fastapi import APIRouter

router = APIRouter(prefix="/stats", tags=["stats"])


@router.get("")
def read_stats() -> dict[str, int]:
    """Placeholder numbers."""
    return {"todos": 0}
'''

USER_TEST = """

def test_user_added_this_test() -> None:
    assert "todo".upper() == "TODO"
"""


def insert_after(path: Path, pattern: str, new_line: Callable[[re.Match[str]], str]) -> str:
    """Insert a line after the first statement matching `pattern`; return the inserted line.

    A statement that opens a parenthesis at the end of its line ends at the closing one.
    """
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = re.match(pattern, line)
        if match:
            inserted = new_line(match)
            if line.rstrip().endswith("("):
                index = lines.index(line[: len(line) - len(line.lstrip())] + ")\n", index)
            lines.insert(index + 1, inserted)
            path.write_text("".join(lines))
            return inserted
    pytest.fail(f"no line of {path.name} matches {pattern!r}: adapt the user edits to it")


def edit_as_a_user(project: Path) -> dict[str, list[str]]:
    """A new route, a changed setting, an edited test and two config tweaks; committed.

    Returns the lines each file must still contain after an update.
    """
    kept: dict[str, list[str]] = {}
    (project / "app" / "routes" / "stats.py").write_text(STATS_ROUTE)
    main = project / "app" / "main.py"
    kept["app/main.py"] = [
        insert_after(
            main,
            r"from app\.routes import ",
            lambda m: "from app.routes.stats import router as stats_router\n",
        ),
        insert_after(
            main,
            r"(\s*)app\.include_router\(",
            lambda m: f"{m.group(1)}app.include_router(stats_router)\n",
        ),
    ]

    # The user changes the default of the first boolean setting.
    config = project / "app" / "config.py"
    text = config.read_text()
    match = re.search(r"(?m)^(    \w+: bool = )(True|False)$", text)
    assert match, "app/config.py has no boolean setting left to change"
    flipped = match.group(1) + ("False" if match.group(2) == "True" else "True")
    config.write_text(text[: match.start()] + flipped + text[match.end() :])
    kept["app/config.py"] = [flipped + "\n"]

    with (project / "tests" / "test_health.py").open("a") as test_file:
        test_file.write(USER_TEST)
    kept["tests/test_health.py"] = [line + "\n" for line in USER_TEST.strip().splitlines()]

    gitignore = project / ".gitignore"
    lines = gitignore.read_text().splitlines(keepends=True)
    lines.insert(USER_IGNORE_AT, USER_IGNORE)
    gitignore.write_text("".join(lines))
    kept[".gitignore"] = [USER_IGNORE]

    dockerfile = project / "Dockerfile"
    text, count = PYTHON_ARG.subn(USER_PYTHON_ARG, dockerfile.read_text())
    assert count == 1
    dockerfile.write_text(text)
    kept["Dockerfile"] = [USER_PYTHON_ARG + "\n"]

    commit_all(project, "My changes")
    return kept


# ---- a) user edits and nearby template changes -----------------------------------------------


def test_update_keeps_user_edits_and_merges_nearby_changes(history: Path, tmp_path: Path) -> None:
    project = copy_project(history, tmp_path / "project", answers(QUICK_VARIANT))
    recorded = recorded_answers(project)
    # What `copier update` needs to find its way back: an absolute source and a tag.
    assert recorded["_src_path"] == str(history)
    assert recorded["_commit"] == OLD_TAG
    rendered_ignore = (project / ".gitignore").read_text()
    assert rendered_ignore == git(history, "show", f"{OLD_TAG}:template/.gitignore"), (
        "template/.gitignore is no longer a plain copy: the line offsets here assume it is"
    )
    kept = edit_as_a_user(project)
    stats_route = (project / "app" / "routes" / "stats.py").read_bytes()

    update_project(project)

    assert conflicts(project) == []
    for name, lines in kept.items():
        text = (project / name).read_text().splitlines(keepends=True)
        missing = [line for line in lines if line not in text]
        assert not missing, f"the update lost the user's lines in {name}: {missing}"
    assert (project / "app" / "routes" / "stats.py").read_bytes() == stats_route

    # The release's changes arrived, next to the user's.
    ignore_lines = (project / ".gitignore").read_text().splitlines(keepends=True)
    assert ignore_lines.index(TEMPLATE_IGNORE) < ignore_lines.index(USER_IGNORE)
    assert ignore_lines.index(USER_IGNORE) - ignore_lines.index(TEMPLATE_IGNORE) == 3
    assert "FROM ghcr.io/astral-sh/uv:99.9 AS uv" in (project / "Dockerfile").read_text()
    assert (project / ADDED_FILE).read_text() == f"# Support\n\nWrite to {NEW_QUESTION_DEFAULT}.\n"
    main_lines = (project / "app" / "main.py").read_text().splitlines(keepends=True)
    closing = main_lines.index(RELEASED_ROUTE_NAME) + 1
    assert main_lines[closing] == ")\n"
    assert main_lines[closing + 1] == kept["app/main.py"][0], "the user's import moved"
    assert RELEASED_ROUTER_LINE in main_lines

    recorded = recorded_answers(project)
    assert recorded["_commit"] == NEW_TAG
    assert recorded[NEW_QUESTION] == NEW_QUESTION_DEFAULT
    for key, value in answers(QUICK_VARIANT).items():
        assert recorded[key] == value

    for name in files(project):
        if name.endswith(".py"):
            compile((project / name).read_text(), name, "exec")
    commit_all(project, "Update from the template")


# ---- b) no edits: an update is a fresh copy ---------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_update_without_edits_equals_a_fresh_copy(
    variant: str, history: Path, tmp_path: Path
) -> None:
    updated = copy_project(history, tmp_path / "updated", answers(variant), OLD_TAG)
    update_project(updated)
    fresh = copy_project(history, tmp_path / "fresh", answers(variant), NEW_TAG)

    assert conflicts(updated) == []
    before, after = files(fresh), files(updated)
    assert sorted(after.keys() - before.keys()) == [], "files only the updated project has"
    assert sorted(before.keys() - after.keys()) == [], "files only the fresh copy has"
    differing = [name for name in before if before[name] != after[name]]
    assert differing == [], f"files that differ from a fresh copy of {NEW_TAG}"
    executable = {n for n in before if os.access(fresh / n, os.X_OK)}
    assert executable == {n for n in after if os.access(updated / n, os.X_OK)}


# ---- c) changing an answer on update ---------------------------------------------------------


def toggled_questions() -> list[str]:
    """The option questions worth switching on update, as copier.yml has them now."""
    present = questions()
    switches: list[str] = [name for name in ("use_alembic", "use_better_auth") if name in present]
    return switches or ["session_mode"]


def other_value(name: str, current: Any) -> Any:
    spec = questions()[name]
    if spec.get("type") == "bool":
        return not current
    choices = spec["choices"]
    values = list(choices.values()) if isinstance(choices, dict) else list(choices)
    return next(value for value in values if value != current)


def default_answer(name: str) -> Any:
    return questions()[name]["default"]


USER_NOTES = "notes/decisions.md"


def without(tree: dict[str, bytes], *names: str) -> dict[str, bytes]:
    return {name: content for name, content in tree.items() if name not in names}


@pytest.mark.parametrize("question", toggled_questions())
def test_changing_an_answer_adds_and_removes_exactly_the_right_files(
    question: str,
    history: Path,
    tmp_path: Path,
    subprocess_env: dict[str, str],
) -> None:
    target = answers(QUICK_VARIANT)
    target.setdefault(question, default_answer(question))
    start = {**target, question: other_value(question, target[question])}
    project = copy_project(history, tmp_path / "project", start)
    expected_before = files(project)  # renders are deterministic: a fresh copy is the same
    notes = project / USER_NOTES
    notes.parent.mkdir()
    notes.write_text("# Why we switched\n")
    commit_all(project, "Our notes")

    expected_after = files(copy_project(history, tmp_path / "fresh-target", target))
    assert expected_before != expected_after, f"{question} changes nothing in the project"

    # Switch to the target answer.
    update_project(project, {question: target[question]}, ref=":current:")
    assert conflicts(project) == []
    after = without(files(project), USER_NOTES)
    assert sorted(after.keys() - expected_before.keys()) == sorted(
        expected_after.keys() - expected_before.keys()
    ), "files added"
    assert sorted(expected_before.keys() - after.keys()) == sorted(
        expected_before.keys() - expected_after.keys()
    ), "files removed"
    assert after == expected_after, "the updated project differs from a fresh copy"
    assert notes.read_text() == "# Why we switched\n"
    assert recorded_answers(project)[question] == target[question]
    assert recorded_answers(project)["_commit"] == OLD_TAG

    # The switched project installs and passes its suite. Its lint and types are not run
    # again: it equals a fresh copy of QUICK_VARIANT byte for byte, which test_variants.py
    # checks.
    commit_all(project, f"Switch {question} to {target[question]}")
    name = f"toggle-{question.replace('_', '-')}"
    install = variant_checks.run(["uv", "sync"], project, subprocess_env)
    checked = variant_checks.Project(name, project, subprocess_env, install)
    variant_checks.test_install(checked)
    variant_checks.test_suite_sqlite(checked)
    commit_all(project, "Lock the dependencies")  # uv.lock, as a user commits it

    # And back: the files the first switch added are gone again.
    update_project(project, {question: start[question]}, ref=":current:")
    assert conflicts(project) == []
    assert without(files(project), USER_NOTES, "uv.lock") == expected_before
    assert notes.read_text() == "# Why we switched\n"


def postgres_if_available(request: pytest.FixtureRequest) -> DatabaseServer | None:
    try:
        server: DatabaseServer = request.getfixturevalue("postgres")
    except pytest.skip.Exception:
        return None
    return server


# ---- d) a used project stays clean for copier ------------------------------------------------

# What running the app or a coverage report writes; the project's .gitignore must hide it.
WRITTEN_BY_USE = ["app.db", "app.db-journal", ".env", ".coverage", "htmlcov/index.html"]


def ci_steps(project: Path) -> list[tuple[str, str, dict[str, str]]]:
    """The generated workflow's `run:` steps with their env: (job, command, env)."""
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = []
    for job_name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "run" in step:
                env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                steps.append((job_name, step["run"], {k: str(v) for k, v in env.items()}))
    return steps


def test_fresh_project_stays_clean_after_sync_and_its_ci_steps(
    history: Path,
    tmp_path: Path,
    subprocess_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    project = copy_project(history, tmp_path / "project", answers(QUICK_VARIANT))
    first = variant_checks.run(["uv", "sync"], project, subprocess_env)
    if first.returncode != 0:
        variant_checks.fail("uv sync failed on a fresh project", first)

    server = postgres_if_available(request)
    steps = ci_steps(project)
    assert steps, "the generated workflow runs nothing"
    for job, command, step_env in steps:
        env = {**subprocess_env, **step_env}
        if env.get("TEST_DATABASE_URL"):
            # The workflow's service container is this machine's server here (or SQLite).
            env["TEST_DATABASE_URL"] = (
                server.create_database("ci_steps_" + job.replace("-", "_")) if server else ""
            )
        result = variant_checks.run(["bash", "-e", "-c", command], project, env)
        if result.returncode != 0:
            variant_checks.fail(f"the generated CI's {job} job fails", result)

    status = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert status == ["?? uv.lock"], "left behind by uv sync and the CI steps (not ignored)"
    not_ignored = [name for name in WRITTEN_BY_USE if not is_ignored(project, name)]
    assert not_ignored == [], "written when the app runs, yet not git-ignored"

    commit_all(project, "Lock the dependencies")
    update_project(project)
    assert conflicts(project) == []
    assert recorded_answers(project)["_commit"] == NEW_TAG
    assert git(project, "status", "--porcelain", "--", "uv.lock") == ""
