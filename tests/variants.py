"""The variants under test: the one table that render and variant suites both read.

Each row holds only the answers that differ from copier.yml's defaults, so a new question
with a sensible default needs no change here; a new axis adds rows.
"""

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "async-uuid": {},
    "async-int": {"id_type": "int"},
    "sync-uuid": {"session_mode": "sync"},
    "sync-int": {"session_mode": "sync", "id_type": "int"},
}

# The variant `uv run pytest -m quick` installs and runs in full.
QUICK_VARIANT = "async-uuid"


def answers(name: str) -> dict[str, Any]:
    """The answers for a variant, as a fresh dict the caller may change."""
    return dict(VARIANTS[name])


def github_matrix() -> str:
    """The variant names as a JSON list: the matrix of .github/workflows/ci.yml."""
    import json

    return json.dumps(list(VARIANTS))


if __name__ == "__main__":
    # `python tests/variants.py` needs nothing but the standard library, so the CI job that
    # lists the variants runs before anything is installed.
    print(github_matrix())
