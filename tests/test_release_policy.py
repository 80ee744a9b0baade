"""Release policy: renames need a `_migrations` step; every release has a CHANGELOG entry.

The checker (release_policy.py) runs against this repository's newest release, a CHANGELOG
section found by its tag or, in a clone without tags, by the commit that added it
(releases.py); and against a synthetic history, where it must catch a rename that has no
migration and accept one that has.
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
from releases import ReleaseHistoryError, create_missing_tags, releases, sections
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
    newest = releases()[-1]
    found = unmigrated_removals(
        REPO_ROOT, newest.tag, None, {name: VARIANTS[name]}, old_ref=newest.ref
    )
    assert found == {}


def test_every_committed_release_section_is_found() -> None:
    committed = git(REPO_ROOT, "show", "HEAD:CHANGELOG.md")
    assert sections(committed), "CHANGELOG.md has no release section"
    found = {release.tag: release for release in releases()}
    assert sorted(found) == sorted(sections(committed))
    for release in found.values():
        # The release commit is where its header first appears.
        assert f"## {release.tag} - " in git(REPO_ROOT, "show", f"{release.commit}:CHANGELOG.md")
        parents = git(REPO_ROOT, "rev-list", "--parents", "-n", "1", release.commit).split()[1:]
        for parent in parents:
            before = git(REPO_ROOT, "show", f"{parent}:CHANGELOG.md")
            assert release.tag not in sections(before)


CHANGELOG = "# Changelog\n\n## Unreleased\n\n- {note}\n{older}"


def changelog_repo(path: Path) -> tuple[Path, dict[str, str]]:
    """A repository whose CHANGELOG gains v1.0.0, then v1.1.0, with work in between."""
    path.mkdir()
    git(path, "init", "--quiet")
    commits = {}
    steps = [
        ("first", "", None),
        ("", "## v1.0.0 - 2026-01-02\n\n- first\n", "v1.0.0"),
        ("second", "## v1.0.0 - 2026-01-02\n\n- first\n", None),
        ("", "## v1.1.0 - 2026-02-03\n\n- second\n\n## v1.0.0 - 2026-01-02\n\n- first\n", "v1.1.0"),
        (
            "third",
            "## v1.1.0 - 2026-02-03\n\n- second\n\n## v1.0.0 - 2026-01-02\n\n- first\n",
            None,
        ),
    ]
    for number, (note, older, release) in enumerate(steps):
        (path / "CHANGELOG.md").write_text(CHANGELOG.format(note=note, older=older))
        (path / "work.txt").write_text(f"step {number}\n")
        commit_all(path, f"Step {number}")
        if release:
            commits[release] = git(path, "rev-parse", "HEAD").strip()
    return path, commits


def test_releases_come_from_the_changelog_history_without_tags(tmp_path: Path) -> None:
    repo, commits = changelog_repo(tmp_path / "repo")
    found = releases(repo)
    assert [(r.tag, r.commit, r.tagged) for r in found] == [
        ("v1.0.0", commits["v1.0.0"], False),
        ("v1.1.0", commits["v1.1.0"], False),
    ]
    assert [r.ref for r in found] == [commits["v1.0.0"], commits["v1.1.0"]]


def test_missing_tags_are_created_at_the_release_commits_once(tmp_path: Path) -> None:
    repo, commits = changelog_repo(tmp_path / "repo")
    git(repo, "tag", "v1.0.0", commits["v1.0.0"])
    created = create_missing_tags(repo)
    assert [(r.tag, r.commit) for r in created] == [("v1.1.0", commits["v1.1.0"])]
    assert git(repo, "rev-list", "-n", "1", "v1.1.0").strip() == commits["v1.1.0"]
    assert git(repo, "cat-file", "-t", "v1.1.0").strip() == "tag", "an annotated tag"
    assert create_missing_tags(repo) == []
    assert all(r.tagged and r.ref == r.tag for r in releases(repo))


def test_a_shallow_clone_says_it_needs_the_history(tmp_path: Path) -> None:
    repo, _ = changelog_repo(tmp_path / "repo")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth", "2", repo.as_uri(), str(shallow))
    with pytest.raises(ReleaseHistoryError, match="git fetch --unshallow"):
        releases(shallow)


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
