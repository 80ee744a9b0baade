"""Release policy: renames need a `_migrations` step; every release has a CHANGELOG entry.

The checker (release_policy.py) runs against this repository's newest release tag when there
is one, and always against a synthetic history, where it must catch a rename that has no
migration and accept one that has: so it is known to work before the first real release.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import copier
import pytest
import yaml
from packaging.version import Version
from release_policy import ALLOWED_REMOVALS, release_tags, unmigrated_removals
from template_history import (
    NEW_TAG,
    OLD_TAG,
    REPO_ROOT,
    commit_all,
    copy_project,
    files,
    git,
    snapshot_template,
)
from variants import QUICK_VARIANT, VARIANTS, answers

pytestmark = pytest.mark.update


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("policy") / "template", OLD_TAG)


def renamable_file(template: Path) -> tuple[str, str]:
    """A generated file every variant has: its template path and its rendered path."""
    candidates = sorted(
        p.relative_to(template).as_posix()
        for p in (template / "template" / "app").rglob("*")
        if p.is_file() and "{" not in p.as_posix() and "__pycache__" not in p.parts
    )
    assert candidates, "template/app holds no unconditional file to rename"
    source = candidates[-1]
    return source, source.removeprefix("template/").removesuffix(".jinja")


def next_release(
    snapshot: Path, tmp_path: Path, migration: Callable[[str], dict[str, str]] | None
) -> tuple[Path, str]:
    """Clone the snapshot, rename one generated file, maybe add a migration, tag NEW_TAG."""
    template = tmp_path / "template"
    subprocess.run(["git", "clone", "--quiet", str(snapshot), str(template)], check=True)
    source, rendered = renamable_file(template)
    renamed = source.replace(Path(source).name, "renamed_" + Path(source).name)
    git(template, "mv", source, renamed)
    if migration is not None:
        config = template / "copier.yml"
        data = yaml.safe_load(config.read_text())
        entries = [*data.get("_migrations", []), migration(rendered)]
        text = config.read_text()
        if "_migrations" in data:
            pytest.skip("copier.yml has _migrations: extend this test to edit them")
        config.write_text(yaml.safe_dump({"_migrations": entries}, sort_keys=False) + text)
    commit_all(template, "Rename a generated file", NEW_TAG)
    return template, rendered


def move_user_file(version: str) -> Callable[[str], dict[str, str]]:
    def entry(rendered: str) -> dict[str, str]:
        new = rendered.replace(Path(rendered).name, "renamed_" + Path(rendered).name)
        return {
            "version": version,
            "command": f"test ! -f {rendered} || git mv {rendered} {new}",
            "when": "{{ _stage == 'before' }}",
        }

    return entry


def unrelated_migration(rendered: str) -> dict[str, str]:
    return {"version": NEW_TAG, "command": "echo nothing to move"}


MAIN = {QUICK_VARIANT: answers(QUICK_VARIANT)}


def test_a_rename_without_migration_is_caught(snapshot: Path, tmp_path: Path) -> None:
    template, rendered = next_release(snapshot, tmp_path, None)
    assert unmigrated_removals(template, OLD_TAG, NEW_TAG, MAIN) == {QUICK_VARIANT: [rendered]}


def test_a_rename_with_a_migration_of_that_release_passes(snapshot: Path, tmp_path: Path) -> None:
    template, _ = next_release(snapshot, tmp_path, move_user_file(NEW_TAG))
    assert unmigrated_removals(template, OLD_TAG, NEW_TAG, MAIN) == {}


@pytest.mark.parametrize(
    "migration",
    [move_user_file(OLD_TAG), unrelated_migration],
    ids=["migration-of-an-older-release", "migration-naming-another-path"],
)
def test_a_migration_that_does_not_cover_the_rename_is_caught(
    snapshot: Path, tmp_path: Path, migration: Callable[[str], dict[str, str]]
) -> None:
    template, rendered = next_release(snapshot, tmp_path, migration)
    assert unmigrated_removals(template, OLD_TAG, NEW_TAG, MAIN) == {QUICK_VARIANT: [rendered]}


# One item per variant, so the renders spread over the test workers.
@pytest.mark.parametrize("name", list(VARIANTS))
def test_no_generated_file_disappears_since_the_newest_release(name: str) -> None:
    tags = release_tags()
    if not tags:
        pytest.skip("no release tag yet; the checker itself is tested on synthetic releases")
    assert unmigrated_removals(REPO_ROOT, tags[-1], None, {name: VARIANTS[name]}) == {}


def test_allowed_removals_say_why() -> None:
    assert all(reason.strip() for reason in ALLOWED_REMOVALS.values())


def test_every_migration_names_the_release_it_belongs_to() -> None:
    # An unversioned migration runs on every update, so every update would need --trust.
    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    for entry in config.get("_migrations", []):
        assert isinstance(entry, dict), f"migration without a version: {entry!r}"
        assert Version(str(entry["version"])), entry
        assert entry.get("command"), f"migration without a command: {entry!r}"


def test_every_release_has_a_changelog_section() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"(?m)^## \[?(v?[0-9][^\]\s]*|Unreleased)\]?", changelog)
    assert "Unreleased" in headings, "CHANGELOG.md needs a '## Unreleased' section on top"
    missing = [tag for tag in release_tags() if tag not in headings and tag[1:] not in headings]
    assert missing == [], "release tags without a CHANGELOG.md section"


@pytest.mark.parametrize("migrated", [False, True], ids=["bare-rename", "rename-with-migration"])
def test_why_the_policy_a_bare_rename_drops_user_edits(
    snapshot: Path, tmp_path: Path, migrated: bool
) -> None:
    # The reason for the policy, shown on a real update. A migration is a command, so only
    # this test passes unsafe=True: users crossing a release with a migration need --trust.
    template, rendered = next_release(
        snapshot, tmp_path, move_user_file(NEW_TAG) if migrated else None
    )
    project = copy_project(template, tmp_path / "project", answers(QUICK_VARIANT), OLD_TAG)
    edited = project / rendered
    edited.write_text("# Our own note, kept across template updates.\n" + edited.read_text())
    commit_all(project, "Edit a generated file")

    copier.run_update(
        project, defaults=True, overwrite=True, unsafe=True, quiet=True, settings=copier.Settings()
    )

    kept = [
        name
        for name in files(project)
        if b"# Our own note, kept across template updates." in (project / name).read_bytes()
    ]
    if migrated:
        # The user's version of the file lands in the new path, as a conflict to resolve.
        assert len(kept) == 1 and kept[0] != rendered
        assert b"<<<<<<< before updating" in (project / kept[0]).read_bytes()
    else:
        assert kept == [], "a bare rename kept the edit: the policy may be relaxed"
        assert not (project / rendered).exists()
