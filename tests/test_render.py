"""Render layer: every variant renders cleanly and records its answers; bad answers are refused."""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path

import copier
import pytest
import yaml
from conftest import REPO_ROOT, RenderVariant
from copier.errors import DirtyLocalWarning
from lint_workflows import actionlint
from template_history import questions
from variants import VARIANTS, answers

pytestmark = pytest.mark.quick

EXPECTED_FILES = [
    "pyproject.toml",
    "README.md",
    ".env.example",
    ".gitignore",
    ".github/workflows/ci.yml",
    ".github/workflows/neon-branch.yml",
    "app/__init__.py",
    "app/main.py",
    "app/config.py",
    "app/about.toml",
    "app/db.py",
    "app/models.py",
    "app/crud.py",
    "app/routes/__init__.py",
    "app/routes/health.py",
    "app/routes/todos.py",
    "app/errors.py",
    "app/stale_plans.py",
    "tests/conftest.py",
    "tests/test_errors.py",
    "tests/test_api_fuzz.py",
    "tests/test_concurrency.py",
]

# Present exactly when Better Auth is on.
AUTH_FILES = [
    "app/auth.py",
    "app/routes/me.py",
    "scripts/__init__.py",
    "scripts/dev_auth.py",
    "tests/better_auth.py",
    "tests/test_auth.py",
    "tests/test_dev_auth.py",
    "tests/test_ownership.py",
]
# What only Better Auth support brings; none of it may survive in a project without it.
AUTH_TRACES = re.compile(r"jwt|jwks|better.?auth|owner_id|CurrentUser|auth_", re.IGNORECASE)
# Present exactly when Alembic is on.
ALEMBIC_FILES = [
    "alembic.ini",
    "app/migrate.py",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/0001_create_todo.py",
    "tests/test_migrations.py",
]

# Computed values feed the templates but must never reach .copier-answers.yml.
KNOWN_COMPUTED = {"is_async", "await_", "def_", "cors_origin_list", "py_tag"}

# Any unrendered tag keeps its opener. A lone "}}" is not sought: it is how nested dict
# literals end in plain Python (`{404: {"description": ...}}`).
JINJA_MARKER = re.compile(r"\{\{|\{%|\{#|%\}|#\}")
# GitHub Actions expressions use the same braces on purpose; they are not residue.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _template_is_dirty() -> bool:
    # Same check copier makes before deciding to include uncommitted changes.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return bool(status.stdout.strip())


def _snapshot(root: Path) -> dict[str, tuple[bytes, bool]]:
    tree = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            tree[path.relative_to(root).as_posix()] = (path.read_bytes(), os.access(path, os.X_OK))
    return tree


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def project(variant: str, render_variant: RenderVariant) -> Path:
    return render_variant(variant)


def test_renders(project: Path) -> None:
    assert (project / ".copier-answers.yml").is_file()


def test_expected_files_present(project: Path) -> None:
    missing = [name for name in EXPECTED_FILES if not (project / name).is_file()]
    assert not missing, f"missing from the rendered project: {missing}"


def test_better_auth_files_and_traces_follow_the_option(project: Path, variant: str) -> None:
    present = [name for name in AUTH_FILES if (project / name).exists()]
    assert present == (AUTH_FILES if answers(variant).get("use_better_auth") else [])
    if answers(variant).get("use_better_auth"):
        return
    hits = []
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.name != ".copier-answers.yml":
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if AUTH_TRACES.search(line):
                    hits.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    assert not hits, "Better Auth is off, yet:\n" + "\n".join(hits)


def test_neon_auth_follows_the_host(project: Path, variant: str) -> None:
    neon = answers(variant).get("better_auth_host") == "neon"
    assert (project / "app/neon_auth.py").is_file() == neon
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    models = (project / "app/models.py").read_text()
    if neon:
        # Neon Auth's ids are uuids: the id-type question is not asked, nor recorded.
        assert "better_auth_id_type" not in recorded
        assert 'foreign_key="neon_auth.user.id"' in models
        assert "owner_id: UUID" in models
        config = (project / "app/config.py").read_text()
        assert "neon_auth_base_url: str" in config
        assert "better_auth_url" not in config
    else:
        assert "neon_auth" not in models


def test_alembic_files_follow_the_option(project: Path, variant: str) -> None:
    present = [name for name in ALEMBIC_FILES if (project / name).exists()]
    assert present == (ALEMBIC_FILES if answers(variant).get("use_alembic") else [])
    if not answers(variant).get("use_alembic"):
        assert "alembic" not in (project / "pyproject.toml").read_text()


def test_workflows_pass_actionlint(project: Path) -> None:
    result = actionlint(*sorted((project / ".github" / "workflows").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_jinja_residue(project: Path) -> None:
    hits = []
    for path in sorted(project.rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file
        for number, line in enumerate(text.splitlines(), start=1):
            if JINJA_MARKER.search(GITHUB_EXPRESSION.sub("", line)):
                hits.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    assert not hits, "Jinja residue in rendered files:\n" + "\n".join(hits)


def test_answers_recorded(project: Path, variant: str) -> None:
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert Path(recorded["_src_path"]).resolve() == REPO_ROOT
    assert recorded.get("_commit"), "_commit missing: `copier update` would have no base"
    specs = questions()
    always_asked = {name for name, spec in specs.items() if "when" not in spec}
    computed = {name for name, spec in specs.items() if spec.get("when") is False}
    assert always_asked - recorded.keys() == set(), "answers missing from .copier-answers.yml"
    assert (computed | KNOWN_COMPUTED) & recorded.keys() == set(), "computed values recorded"
    for key, value in answers(variant).items():
        assert recorded[key] == value


def test_copy_needs_no_trust(variant: str, tmp_path: Path) -> None:
    # pytest-copie always passes unsafe=True; this copy proves users never need --trust.
    dirty = _template_is_dirty()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        copier.run_copy(
            str(REPO_ROOT),
            tmp_path / "project",
            data=answers(variant),
            defaults=True,
            unsafe=False,
            vcs_ref="HEAD",
            quiet=True,
        )
    assert (tmp_path / "project" / ".copier-answers.yml").is_file()
    # Copier renders uncommitted changes only when it notices them and says so: the tests
    # must exercise the working tree, not just the last commit.
    dirty_warned = any(issubclass(w.category, DirtyLocalWarning) for w in caught)
    assert dirty_warned == dirty


def test_render_is_deterministic(
    project: Path, variant: str, render_variant: RenderVariant
) -> None:
    first, second = _snapshot(project), _snapshot(render_variant(variant))
    if _template_is_dirty():
        # Copier snapshots a dirty tree as a throwaway commit whose hash changes with the
        # clock, and records that hash as _commit: the one line allowed to differ.
        for tree in (first, second):
            content, executable = tree[".copier-answers.yml"]
            tree[".copier-answers.yml"] = (re.sub(rb"(?m)^_commit: .*\n", b"", content), executable)
    assert first.keys() == second.keys()
    changed = [name for name in first if first[name] != second[name]]
    assert not changed, f"files differ between two renders of the same answers: {changed}"


BAD_ANSWERS = [
    pytest.param("project_name", "   ", "Type a name, for example: Todo API", id="blank-name"),
    pytest.param("project_name", "Two\nlines", "Type the name on one line", id="name-newline"),
    pytest.param("description", "tab\there", "Type one line, e.g.", id="description-tab"),
    pytest.param("project_slug", "Bad Slug", "Type e.g. todo-api: lowercase", id="slug-with-space"),
    pytest.param("project_slug", "1abc", "a letter first", id="slug-leading-digit"),
    pytest.param("project_slug", "a--b", "single dashes", id="slug-double-dash"),
    pytest.param("project_slug", "a" * 59, "Type at most 58 characters", id="slug-too-long"),
    pytest.param(
        "cors_origins",
        "localhost:3000",
        'Type e.g. http://localhost:3000,https://app.example.com, not "localhost:3000"',
        id="cors-no-scheme",
    ),
    pytest.param(
        "cors_origins",
        "http://x.com,http://x.com/path",
        'not "http://x.com/path"',
        id="cors-path",
    ),
    pytest.param("session_mode", "threads", "Invalid choice", id="session-mode-choice"),
    pytest.param("better_auth_id_type", "cuid", "Invalid choice", id="better-auth-id-choice"),
    pytest.param("better_auth_host", "auth0", "Invalid choice", id="better-auth-host-choice"),
]


@pytest.mark.parametrize(("question", "value", "message"), BAD_ANSWERS)
def test_bad_answer_rejected(question: str, value: str, message: str, tmp_path: Path) -> None:
    destination = tmp_path / "project"
    destination.mkdir()  # existing, so copier's cleanup-on-error cannot hide a partial write
    with pytest.raises(ValueError) as excinfo:
        copier.run_copy(
            str(REPO_ROOT),
            destination,
            data={question: value},
            defaults=True,
            unsafe=False,
            vcs_ref="HEAD",
            quiet=True,
        )
    assert f"'{question}'" in str(excinfo.value)
    assert message in str(excinfo.value)
    assert list(destination.iterdir()) == []
    if "Invalid choice" not in message:
        # Copier's interactive prompt shows the validator's message on one line under the
        # question: it must fit 80 columns with a margin (only the quoted value typed may run
        # past them, at the end) and start with what to type.
        shown = str(excinfo.value).split(f"'{question}': ", 1)[1]
        assert shown.startswith("Type "), shown
        assert len(re.sub(r'"[^"]*"', '""', shown)) <= 76, shown


def test_a_long_name_gets_a_valid_default_slug(tmp_path: Path) -> None:
    name = "Ünïcode Orders & Invoices API for the Eastern Region Warehouse Teams (beta)"
    copier.run_copy(
        str(REPO_ROOT),
        tmp_path / "project",
        data={"project_name": name, "use_better_auth": False, "use_alembic": False},
        defaults=True,
        unsafe=False,
        vcs_ref="HEAD",
        quiet=True,
    )
    slug = yaml.safe_load((tmp_path / "project" / ".copier-answers.yml").read_text())[
        "project_slug"
    ]
    assert slug == "n-code-orders-invoices-api-for-the-eastern-region-warehous"
    assert len(slug) == 58


# Questionary shows Copier's help after its prompt mark (🎤, two columns) and a space.
PROMPT_MARK_COLUMNS = 3


def test_every_help_fits_one_80_column_line() -> None:
    # A longer help is cut at the terminal's edge; details belong in docs/options.md.
    helps = {name: str(spec["help"]) for name, spec in questions().items() if "help" in spec}
    assert helps
    too_long = {
        name: text
        for name, text in helps.items()
        if "\n" in text or PROMPT_MARK_COLUMNS + len(text) > 80
    }
    assert too_long == {}


@pytest.mark.parametrize("variant", ["async-uuid", "sync-int-noauth"])
def test_the_after_copy_message_names_the_next_commands(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        # Copier warns when it renders uncommitted changes: those are under test.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        copier.run_copy(
            str(REPO_ROOT),
            tmp_path / "project",
            data=answers(variant),
            defaults=True,
            unsafe=False,
            vcs_ref="HEAD",
            quiet=False,
        )
    message = capsys.readouterr().err
    assert "uv run fastapi dev" in message
    # Without a token every todo route is a 401: the message says where one comes from.
    dev_auth = "uv run python -m scripts.dev_auth" in message
    assert dev_auth == answers(variant)["use_better_auth"]


def test_the_readme_opens_with_one_description(project: Path) -> None:
    # The title, the description typed at `copier copy`, then what the template adds: that
    # paragraph must not say the description again in other words.
    title, description, *rest = (
        (project / "README.md").read_text().split("\n## ", 1)[0].strip().split("\n\n")
    )
    assert title.startswith("# ")
    words = set(re.findall(r"\w+", description.lower()))
    for paragraph in rest:
        shared = words & set(re.findall(r"\w+", paragraph.lower()))
        assert len(shared) <= len(words) / 2, paragraph
