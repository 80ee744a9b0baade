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

# Neon Auth (Neon's managed Better Auth) as the host: uuid user ids in the neon_auth schema.
NEON_AUTH_VARIANTS: dict[str, dict[str, Any]] = {
    "async-uuid-neon": {**MAIN_VARIANTS["async-uuid"], "better_auth_host": "neon"},
    "sync-int-neon": {**MAIN_VARIANTS["sync-int"], "better_auth_host": "neon"},
}

# The longest slug copier.yml accepts: with "_test" it is a 63-byte PostgreSQL identifier.
LONGEST_SLUG = ("a-very-long-service-name-" * 3)[:57] + "z"

# Text answers are answers too: two main rows also carry the nastiest ones the questions
# accept, so that no answer can leave a project failing its own formatting, lint, types or
# tests. They ride on main rows rather than rows of their own: the text only changes names,
# and a row of its own would install and run a whole variant a second time.
TEXT_ANSWERS: dict[str, dict[str, Any]] = {
    "async-int": {
        "project_name": (
            "Ünïcode “Todo” API — O'Brien's \"quoted\" C:\\temp\\new \\n 東京 🚀 $HOME `ls` "
            "<b>&amp;</b> | pipes | " + "and a very long name, " * 6
        ).strip(),
        "project_slug": LONGEST_SLUG,
        "description": (
            "Says \"hi\" and 'bye', keeps \\n, \\t, \\\\ and \\u00e9 as typed, costs $5, runs "
            "`rm`, <script>alert(1)</script> & more — été 東京 🚀; " * 5
        ).strip(),
        # The question's own example, then an origin longer than a line.
        "cors_origins": "http://localhost:3000,https://app.example.com,"
        "https://a-very-long-subdomain-for-the-admin-console.eu-central-1.staging.example.com:8443",
    },
    "sync-uuid-noauth-noalembic": {
        "project_name": "\"\"\"'''' \\ \" ' \\\\ ",
        "project_slug": "x",
        "description": "",
        "cors_origins": "",
    },
}

for _name, _text in TEXT_ANSWERS.items():
    MAIN_VARIANTS[_name] = {**MAIN_VARIANTS[_name], **_text}

VARIANTS: dict[str, dict[str, Any]] = {
    **MAIN_VARIANTS,
    **BETTER_AUTH_VARIANTS,
    **NEON_AUTH_VARIANTS,
}

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
