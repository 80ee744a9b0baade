"""The variants under test: the one table that render and variant suites both read.

Each row holds only the answers that differ from copier.yml's defaults, so a new question
with a sensible default needs no change here; a new axis adds rows.
"""

from itertools import product
from typing import Any

# The main axes: every combination is a first-class project.
MAIN_AXES: dict[str, dict[str, Any]] = {
    "session_mode": {"async": "async", "sync": "sync"},
    "id_type": {"uuid": "uuid", "int": "int"},
    "use_better_auth": {"": True, "noauth": False},
    "use_alembic": {"": True, "noalembic": False},
}


def _main_variants() -> dict[str, dict[str, Any]]:
    variants = {}
    for labels in product(*(axis.keys() for axis in MAIN_AXES.values())):
        name = "-".join(label for label in labels if label)
        variants[name] = {
            question: axis[label]
            for (question, axis), label in zip(MAIN_AXES.items(), labels, strict=True)
        }
    return variants


MAIN_VARIANTS = _main_variants()

# Better Auth's sub-options, each on a main variant that does not share its other choices.
BETTER_AUTH_VARIANTS: dict[str, dict[str, Any]] = {
    "async-int-ba-uuid": {**MAIN_VARIANTS["async-int"], "better_auth_id_type": "uuid"},
    "sync-uuid-ba-serial": {**MAIN_VARIANTS["sync-uuid"], "better_auth_id_type": "serial"},
    "sync-int-ba-separate-db": {**MAIN_VARIANTS["sync-int"], "better_auth_shared_db": False},
    "async-uuid-ba-serial-separate-db": {
        **MAIN_VARIANTS["async-uuid"],
        "better_auth_id_type": "serial",
        "better_auth_shared_db": False,
    },
}

VARIANTS: dict[str, dict[str, Any]] = {**MAIN_VARIANTS, **BETTER_AUTH_VARIANTS}

# The variant `uv run pytest -m quick` installs and runs in full: every default answer.
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
