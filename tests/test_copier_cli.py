"""Copier's command line as users run it: the README's first command, and the Copier versions
the template claims to support.

a) README command 1 (its `copier copy` part, exactly as README.md writes it) run in a clone of
   this template, with and without release tags, makes a project whose `copier update`, run
   in the project as its README says, brings a later template commit in;
b) the oldest Copier that copier.yml's `_min_copier_version` admits, and the newest one on the
   package index, copy the same project as the locked Copier and update it to the next release;
c) the Copier release just below the minimum refuses with Copier's own message, not a crash;
d) the docs name the same minimum as copier.yml.

Every copy and update here is a real `copier` process (never `--trust`), run from the
directory a user would be in: that is where a relative `_src_path` breaks.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from packaging.version import Version
from template_history import (
    NEW_TAG,
    OLD_TAG,
    commit_all,
    conflicts,
    copy_project,
    files,
    git,
    recorded_answers,
    snapshot_template,
)

pytestmark = pytest.mark.update

MIN_COPIER = str(yaml.safe_load((REPO_ROOT / "copier.yml").read_text())["_min_copier_version"])
# The release before the minimum: it crashes on this template's `_envops` (`undefined` given
# as a string), so the minimum must keep it out.
BELOW_MIN_COPIER = "9.14.3"

# What the next template commit changes, in a plain (non-Jinja) file every project has.
RELEASED_LINE = ".hypothesis/\n"

TIMEOUT_SECONDS = 600


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def check(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed (exit {result.returncode}):\n$ {shlex.join(result.args)}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )


def readme_copy_command() -> str:
    """The `copier copy` part of README command 1, as written."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert block, "README.md's 'The two commands' section lost its first bash block"
    parts = [part.strip() for part in block.group(1).split("&&")]
    copies = [part for part in parts if " copier copy " in f" {part} "]
    assert len(copies) == 1, f"README command 1 should hold one `copier copy`: {parts}"
    assert parts[1] == f"cd {shlex.split(copies[0])[-1]}", "command 1 no longer enters the copy"
    return copies[0]


def release_a_change(template: Path, tag: str | None) -> None:
    gitignore = template / "template" / ".gitignore"
    gitignore.write_text(gitignore.read_text() + RELEASED_LINE)
    commit_all(template, "Next template commit: one more ignored path", tag)


# The Copier of this repository's environment (the locked version), as a command.
COPIER = str(Path(sys.executable).with_name("copier"))


@pytest.mark.parametrize("tagged", [True, False], ids=["tagged-clone", "clone-without-tags"])
def test_readme_command_makes_an_updatable_project(
    tagged: bool, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    template = snapshot_template(tmp_path / "clone", OLD_TAG if tagged else None)
    first_commit = git(template, "rev-parse", "HEAD").strip()
    # A commit after the release: the README says Copier renders the release, not HEAD.
    (template / "NOTES.md").write_text("work in progress\n")
    commit_all(template, "Work after the release")
    copied_commit = first_commit if tagged else git(template, "rev-parse", "HEAD").strip()

    command = readme_copy_command()
    destination = shlex.split(command)[-1]
    project = tmp_path / "todo-api"
    # Only the destination changes: the test must not write to the README's /tmp/todo-api.
    assert command.endswith(f" {destination}")
    command = command[: -len(destination)] + shlex.quote(str(project))
    check(run(["bash", "-c", command], template, subprocess_env), f"README command 1 ({command})")

    recorded = recorded_answers(project)
    assert git(template, "rev-parse", f"{recorded['_commit']}^{{commit}}").strip() == copied_commit

    git(project, "init", "--quiet")
    commit_all(project, "Generated project")
    release_a_change(template, NEW_TAG if tagged else None)

    # As the generated README says: `copier update --defaults`, in the project.
    update = run([COPIER, "update", "--defaults"], project, subprocess_env)
    check(update, "copier update in the project README command 1 made")
    assert conflicts(project) == []
    assert (project / ".gitignore").read_text().endswith(RELEASED_LINE)
    recorded = recorded_answers(project)
    # What lets any later update, run from anywhere, find the template again.
    assert Path(recorded["_src_path"]).is_absolute(), recorded["_src_path"]
    assert Path(recorded["_src_path"]).resolve() == template.resolve()
    head = git(template, "rev-parse", "HEAD").strip()
    assert git(template, "rev-parse", f"{recorded['_commit']}^{{commit}}").strip() == head


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = snapshot_template(tmp_path_factory.mktemp("releases") / "template", OLD_TAG)
    release_a_change(template, NEW_TAG)
    return template


@pytest.mark.parametrize(
    "requirement", [f"copier=={MIN_COPIER}", "copier@latest"], ids=["oldest", "newest"]
)
def test_supported_copier_copies_and_updates(
    requirement: str, two_releases: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    copier = ["uvx", "--from", requirement, "copier"]
    version = run([*copier, "--version"], tmp_path, subprocess_env)
    check(version, f"uvx --from {requirement} copier --version")
    if requirement.startswith("copier=="):
        assert version.stdout.split()[-1] == MIN_COPIER, version.stdout

    project = tmp_path / "project"
    copy = run(
        [*copier, "copy", "--defaults", "--vcs-ref", OLD_TAG, str(two_releases), str(project)],
        tmp_path,
        subprocess_env,
    )
    check(copy, f"copier copy with {requirement}")
    # It renders exactly what this repository's own (locked) Copier renders.
    git(project, "init", "--quiet")
    commit_all(project, "Generated project")
    reference = copy_project(two_releases, tmp_path / "reference", {}, OLD_TAG)
    assert files(project) == files(reference)

    (project / "NOTES.md").write_text("# Our notes\n")
    commit_all(project, "Our notes")
    update = run([*copier, "update", "--defaults"], project, subprocess_env)
    check(update, f"copier update with {requirement}")
    assert conflicts(project) == []
    assert recorded_answers(project)["_commit"] == NEW_TAG
    assert (project / ".gitignore").read_text().endswith(RELEASED_LINE)
    assert (project / "NOTES.md").read_text() == "# Our notes\n"


def test_copier_below_the_minimum_refuses_cleanly(
    two_releases: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    assert Version(BELOW_MIN_COPIER) < Version(MIN_COPIER)
    project = tmp_path / "project"
    copier = ["uvx", "--from", f"copier=={BELOW_MIN_COPIER}", "copier"]
    copy = run(
        [*copier, "copy", "--defaults", str(two_releases), str(project)], tmp_path, subprocess_env
    )
    assert copy.returncode != 0
    output = copy.stdout + copy.stderr
    assert f"requires Copier version >= {MIN_COPIER}" in output, output[-3000:]
    assert "Traceback" not in output
    assert not project.exists()


def test_docs_name_the_minimum_copier_version() -> None:
    wanted = f"Copier {MIN_COPIER} or newer"
    for page in ("docs/getting-started.md", "docs/updating.md"):
        text = (REPO_ROOT / page).read_text()
        named = re.findall(r"Copier (\d+\.\d+(?:\.\d+)?) or newer", text)
        assert named, f"{page} no longer says which Copier it needs"
        assert set(named) == {MIN_COPIER}, f"{page} says {named}; copier.yml wants {wanted}"
