"""Releases are CHANGELOG.md sections; git tags are copies of them for Copier.

A release is a section `## vX.Y.Z - YYYY-MM-DD` of CHANGELOG.md, and its commit is the one
that added that header line. Copier only sees tags, but tags do not travel everywhere (a
clone or mirror made without them, an export of the history): the CHANGELOG's history does.
So the release-policy check finds each release here, by its tag when there is one and by
the history otherwise, and the "Release tags" workflow creates the tags that are missing.

    python tests/releases.py          # each release, its commit, and whether it is tagged
    python tests/releases.py --tag    # also create the missing tags (annotated), locally

Standard library only: the workflow runs it before installing anything.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# A release section's header line; "## Unreleased" and pre-releases are not releases.
HEADER = re.compile(r"^## (v(\d+)\.(\d+)\.(\d+)) - \d{4}-\d{2}-\d{2}[ \t]*$", re.MULTILINE)


class ReleaseHistoryError(RuntimeError):
    """The history cannot say which commit made a release (e.g. a shallow clone)."""


@dataclass(frozen=True)
class Release:
    tag: str
    # The commit that added the section header.
    commit: str
    # Whether the tag exists in this clone.
    tagged: bool

    @property
    def ref(self) -> str:
        """What to check out for this release: the tag when present, else the commit."""
        return self.tag if self.tagged else self.commit


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{result.stderr}")
    return result.stdout


def sections(changelog: str) -> list[str]:
    """The release tags that have a section, newest first as written."""
    return [match.group(1) for match in HEADER.finditer(changelog)]


def version_key(tag: str) -> tuple[int, int, int]:
    match = HEADER.match(f"## {tag} - 2000-01-01")
    if match is None:
        raise ValueError(f"not a release tag: {tag}")
    return int(match.group(2)), int(match.group(3)), int(match.group(4))


def section_commit(repo: Path, tag: str) -> str | None:
    """The oldest commit on HEAD's history that added `## TAG - ` to CHANGELOG.md."""
    pattern = rf"^## {re.escape(tag)} - "
    # -G takes an extended regular expression and matches each added or removed line.
    out = git(repo, "log", "--format=%H", "--reverse", "-G", pattern, "HEAD", "--", "CHANGELOG.md")
    commits = out.split()
    if not commits:
        return None
    commit = commits[0]
    # A shallow clone's oldest commit shows the whole file as added: it proves nothing.
    shallow = repo / git(repo, "rev-parse", "--git-path", "shallow").strip()
    if shallow.is_file() and commit in shallow.read_text().split():
        raise ReleaseHistoryError(
            f"the commit that released {tag} is older than this shallow clone; "
            "run `git fetch --unshallow` (in GitHub Actions: checkout with fetch-depth: 0)"
        )
    return commit


def releases(repo: Path = REPO_ROOT) -> list[Release]:
    """Every committed release section of CHANGELOG.md, oldest first.

    A section not committed yet (the release being prepared) is not a release.
    """
    tags = set(git(repo, "tag", "--list", "v*").split())
    found = []
    for tag in sections((repo / "CHANGELOG.md").read_text()):
        commit = section_commit(repo, tag)
        if commit is not None:
            found.append(Release(tag, commit, tag in tags))
    return sorted(found, key=lambda release: version_key(release.tag))


def create_missing_tags(repo: Path = REPO_ROOT) -> list[Release]:
    """Tag each release that has no tag at the commit that added its section."""
    created = []
    for release in releases(repo):
        if not release.tagged:
            git(repo, "tag", "--annotate", "--message", release.tag, release.tag, release.commit)
            created.append(Release(release.tag, release.commit, tagged=True))
    return created


def main(argv: list[str]) -> int:
    if argv not in ([], ["--tag"]):
        print(__doc__, file=sys.stderr)
        return 2
    for release in releases():
        state = "tagged" if release.tagged else "no tag"
        print(f"{release.tag} {release.commit} {state}")
    if argv == ["--tag"]:
        for release in create_missing_tags():
            print(f"created tag {release.tag} at {release.commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
