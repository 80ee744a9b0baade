"""Release policy: no release renames or moves a generated file without a `_migrations` step.

When a path that the previous release rendered is missing from the next one (same answers),
`copier update` deletes the old file, edits and all, and writes the new path fresh: the user's
changes to it are silently gone. So every such path must be named in the command of a
`_migrations` entry whose version lies after the previous release, or be listed in
ALLOWED_REMOVALS below with the reason no user loses anything.

A release is a CHANGELOG.md section (tests/releases.py): its tag when the clone has it, else
the commit that added the section, so the check runs in a clone without tags too.

Before releasing (docs/releasing.md):

    uv run python tests/release_policy.py            # newest release vs the working tree
    uv run python tests/release_policy.py v0.1.0     # a given release vs the working tree
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import copier
import yaml
from copier.errors import DirtyLocalWarning
from packaging.version import InvalidVersion, Version
from releases import Release, releases

REPO_ROOT = Path(__file__).resolve().parent.parent

# Generated paths a release may drop without a migration, each with the reason no user edit
# is lost (e.g. a file users never edit, now generated under the same name elsewhere is NOT
# a reason: that is a move and needs a migration). Keep this empty unless it must not be.
ALLOWED_REMOVALS: dict[str, str] = {}


def release_tags(template: Path = REPO_ROOT) -> list[str]:
    """Tags that are PEP 440 final releases, oldest first (what `copier update` offers)."""
    out = subprocess.run(
        ["git", "tag", "--list"], cwd=template, capture_output=True, text=True, check=True
    ).stdout
    releases = []
    for tag in out.split():
        try:
            version = Version(tag)
        except InvalidVersion:
            continue
        if not version.is_prerelease:
            releases.append((version, tag))
    return [tag for _, tag in sorted(releases)]


def copier_config(template: Path, ref: str | None) -> dict[str, Any]:
    """copier.yml at `ref`, or in the working tree when `ref` is None."""
    if ref is None:
        text = (template / "copier.yml").read_text()
    else:
        text = subprocess.run(
            ["git", "show", f"{ref}:copier.yml"],
            cwd=template,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def rendered_paths(template: Path, ref: str | None, data: Mapping[str, Any]) -> set[str]:
    """The files `copier copy` writes for these answers (ref None: the working tree)."""
    with TemporaryDirectory() as tmp, warnings.catch_warnings():
        # Rendering the working tree with uncommitted changes is the point here.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        dst = Path(tmp) / "project"
        copier.run_copy(
            str(template),
            dst,
            data=dict(data),
            vcs_ref=ref or "HEAD",
            defaults=True,
            unsafe=False,
            quiet=True,
            settings=copier.Settings(),
        )
        return {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()}


def migration_commands(config: Mapping[str, Any], after: str, upto: str | None) -> list[str]:
    """Commands of the `_migrations` entries with after < version <= upto, as text."""
    commands = []
    low, high = Version(after), Version(upto) if upto else None
    for entry in config.get("_migrations", []):
        if not isinstance(entry, dict) or "version" not in entry:
            continue  # unversioned entries run on every update: no evidence of a move
        version = Version(str(entry["version"]))
        if version <= low or (high is not None and version > high):
            continue
        parts = [entry.get("command"), *entry.get("before", []), *entry.get("after", [])]
        for part in parts:
            if part:
                commands.append(part if isinstance(part, str) else " ".join(map(str, part)))
    return commands


def unmigrated_removals(
    template: Path,
    old_tag: str,
    new_ref: str | None,
    variants: Mapping[str, Mapping[str, Any]],
    *,
    old_ref: str | None = None,
) -> dict[str, list[str]]:
    """Per variant, the paths release `old_tag` renders, `new_ref` does not, and nothing covers.

    `old_ref` is what to render for `old_tag` (its release commit in a clone without the
    tag); by default the tag itself. `new_ref` None means the working tree, i.e. the next
    release: every migration versioned after `old_tag` counts.
    """
    commands = migration_commands(copier_config(template, new_ref), old_tag, new_ref)
    found = {}
    for name, answers in variants.items():
        gone = rendered_paths(template, old_ref or old_tag, answers) - rendered_paths(
            template, new_ref, answers
        )
        uncovered = sorted(
            path
            for path in gone
            if path not in ALLOWED_REMOVALS and not any(path in cmd for cmd in commands)
        )
        if uncovered:
            found[name] = uncovered
    return found


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from variants import VARIANTS

    known = releases()
    chosen: Release | None = known[-1] if known else None
    if argv:
        chosen = next((release for release in known if release.tag == argv[0]), None)
        if chosen is None:
            print(f"{argv[0]} is no release section of CHANGELOG.md", file=sys.stderr)
            return 2
    if chosen is None:
        print("No release in CHANGELOG.md yet: nothing to compare with.")
        return 0
    old = chosen.tag if chosen.tagged else f"{chosen.tag} (commit {chosen.commit[:12]}, untagged)"
    found = unmigrated_removals(REPO_ROOT, chosen.tag, None, VARIANTS, old_ref=chosen.ref)
    for variant, paths in found.items():
        print(f"{variant}: generated by {old}, gone now, no migration: {', '.join(paths)}")
    if not found:
        print(f"No generated file of {old} disappears without a migration.")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
