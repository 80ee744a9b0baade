"""A template with release tags: this working tree, copied into a fresh git repository.

The update and release-policy tests need tagged template versions to copy from and update to.
This repository may have no tag yet, and its newest tag is not what is under test anyway: the
working tree is. So they copy the working tree (what `git ls-files --cached --others
--exclude-standard` lists: tracked files as they are on disk plus new, unignored files) into a
new repository, tag it, and then change it the way a later release would.

Copier runs through its Python API with `unsafe=False` (never `--trust`), with the defaults
for unasked questions, and with empty user settings so that a developer's own
`~/.config/copier/settings.yml` cannot change the answers under test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import copier
import yaml
from copier.errors import DirtyLocalWarning

REPO_ROOT = Path(__file__).resolve().parent.parent

# Far above any real release, so that no real `_migrations` entry falls between the two
# synthetic versions (crossing one needs --trust, which users must never need).
OLD_TAG = "v999.0.0"
NEW_TAG = "v999.1.0"

_GIT_CONFIG = (
    "-c",
    "user.name=Template Tests",
    "-c",
    "user.email=template-tests@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "core.hooksPath=/dev/null",
)

# Directories that tools create and that no update writes to.
_NOT_THE_PROJECTS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}

# A line that git merge-file or copier writes around a conflict.
CONFLICT_MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *_GIT_CONFIG, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout


def commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    if tag:
        git(repo, "tag", tag)


def listed_files(root: Path) -> list[str]:
    """Files git would track in `root`: committed or not, minus the ignored ones."""
    out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return sorted({name for name in out.split("\0") if name and (root / name).is_file()})


def is_ignored(root: Path, name: str) -> bool:
    """Whether the repository's .gitignore rules hide `name` (existing or not)."""
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", name], cwd=root, check=False
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"git check-ignore failed in {root} for {name}")
    return result.returncode == 0


def snapshot_template(dest: Path, tag: str | None = OLD_TAG) -> Path:
    """Copy this working tree into a new repository at `dest` and tag it (unless `tag` is None)."""
    dest.mkdir(parents=True)
    for name in listed_files(REPO_ROOT):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    git(dest, "init", "--quiet")
    commit_all(dest, f"Template as in the working tree ({tag or 'untagged'})", tag)
    return dest


def questions(template: Path = REPO_ROOT) -> dict[str, dict[str, Any]]:
    """copier.yml's questions (computed values included), by name."""
    config = yaml.safe_load((template / "copier.yml").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and isinstance(v, dict)}


def render_working_tree(dst: Path, data: Mapping[str, Any]) -> Path:
    """`copier copy --vcs-ref HEAD` of this repository: uncommitted changes included."""
    with warnings.catch_warnings():
        # Copier warns that it renders uncommitted changes: that is what is under test.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        copier.run_copy(
            str(REPO_ROOT),
            dst,
            data=dict(data),
            vcs_ref="HEAD",
            defaults=True,
            unsafe=False,
            quiet=True,
            settings=copier.Settings(),
        )
    return dst


def copy_project(template: Path, dst: Path, data: Mapping[str, Any], ref: str = OLD_TAG) -> Path:
    """`copier copy --defaults --vcs-ref REF`, then commit the result as a user would."""
    copier.run_copy(
        str(template),
        dst,
        data=dict(data),
        vcs_ref=ref,
        defaults=True,
        unsafe=False,
        quiet=True,
        settings=copier.Settings(),
    )
    git(dst, "init", "--quiet")
    commit_all(dst, "Generate the project from the template")
    return dst


def update_project(
    project: Path, data: Mapping[str, Any] | None = None, ref: str | None = None
) -> None:
    """`copier update --defaults [-r REF] [-d KEY=VALUE ...]`: newest tag unless `ref`."""
    copier.run_update(
        project,
        data=dict(data or {}),
        # The CLI turns "-r :current:" into this enum; the API takes the enum only.
        vcs_ref=copier.VcsRef.CURRENT if ref == ":current:" else ref,
        defaults=True,
        overwrite=True,
        unsafe=False,
        quiet=True,
        settings=copier.Settings(),
    )


def files(root: Path) -> dict[str, bytes]:
    """The project's files (as git sees them, ignored ones left out) and their bytes."""
    return {name: (root / name).read_bytes() for name in listed_files(root)}


def conflicts(project: Path) -> list[str]:
    """Everything a failed merge leaves: unmerged paths, conflict markers, .rej files."""
    found = [f"unmerged: {line}" for line in git(project, "ls-files", "--unmerged").splitlines()]
    for name in listed_files(project):
        if CONFLICT_MARKER.search((project / name).read_bytes()):
            found.append(f"conflict markers: {name}")
    # Rejected hunks count even where a .gitignore rule would hide them.
    for directory, subdirs, names in os.walk(project):
        subdirs[:] = [d for d in subdirs if d not in _NOT_THE_PROJECTS]
        for name in names:
            if name.endswith((".rej", ".orig")):
                found.append(f"left over: {Path(directory, name).relative_to(project)}")
    return found


def recorded_answers(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return answers
