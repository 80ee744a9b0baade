"""Run the generated Neon branch workflow's own `run:` steps here, as a GitHub runner would.

A runner gives each step its workflow, job and step `env:` with every `${{ ... }}` expression
evaluated, a `GITHUB_OUTPUT` file for step outputs, `RUNNER_TEMP`, and runs the script with
`bash --noprofile --norc -eo pipefail`. `run_job` does the same with the expressions this
module is told about (what Neon's create-branch action would output: the URLs of a local
copy of a database); an expression it is not told about fails the run, so a new one in the
workflow cannot slip by untested. `uses:` steps (checkout, setup-python, Neon's actions) are
not run: their outputs are what the caller supplies.

The stand-in for a Neon branch is `CREATE DATABASE ... TEMPLATE parent`: a copy of a
populated database, made with psql.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from postgres import find_bindir, find_psql

WORKFLOW = Path(".github") / "workflows" / "neon-branch.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
STEP_TIMEOUT = 180


def load(project: Path) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((project / WORKFLOW).read_text())
    # YAML 1.1 reads the key `on:` as True; GitHub reads it as "on".
    return {("on" if key is True else str(key)): value for key, value in data.items()}


def evaluate(value: object, known: Mapping[str, str]) -> str:
    """A value with its `${{ expr }}` parts replaced by what `known` says they are."""

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression not in known:
            raise KeyError(f"the test does not know what ${{{{ {expression} }}}} is")
        return known[expression]

    return EXPRESSION.sub(substitute, str(value))


@dataclass
class StepRun:
    name: str
    script: str
    returncode: int
    output: str
    outputs: dict[str, str]

    def report(self) -> str:
        head = f"--- step {self.name!r} (exit {self.returncode}, outputs {self.outputs})"
        return f"{head}\n$ {self.script}\n{self.output}"


def run_job(
    project: Path,
    job_name: str,
    *,
    base_env: Mapping[str, str],
    known: Mapping[str, str],
    env_overrides: Mapping[str, str],
    runner_temp: Path,
) -> list[StepRun]:
    """Run the job's `run:` steps in order, stopping at the first failure, as GitHub does.

    `env_overrides` replaces step env values after evaluation (a free port for APP_PORT, say).
    Outputs of a step with an `id` become known to later steps as `steps.<id>.outputs.<key>`.
    """
    workflow = load(project)
    job = workflow["jobs"][job_name]
    known = dict(known)
    runs: list[StepRun] = []
    runner_temp.mkdir(parents=True, exist_ok=True)
    for index, step in enumerate(job["steps"]):
        if "run" not in step:
            continue
        script = str(step["run"])
        # Expressions inside a script are a script-injection risk: values go through env.
        assert not EXPRESSION.search(script), f"{job_name}: a run script holds an expression"
        declared = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
        env = dict(base_env)
        env.update({key: evaluate(value, known) for key, value in declared.items()})
        env.update({key: value for key, value in env_overrides.items() if key in declared})
        output_file = runner_temp / f"output-{index}"
        output_file.write_text("")
        env.update(GITHUB_OUTPUT=str(output_file), RUNNER_TEMP=str(runner_temp))
        try:
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=project,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=STEP_TIMEOUT,
            )
            returncode, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            returncode = -1
            partial = exc.output.decode() if isinstance(exc.output, bytes) else exc.output or ""
            output = f"{partial}\n[timed out after {STEP_TIMEOUT}s]"
        outputs = dict(
            line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
        )
        name = str(step.get("name") or script.splitlines()[0])
        runs.append(StepRun(name, script, returncode, output, outputs))
        if "id" in step:
            known.update({f"steps.{step['id']}.outputs.{k}": v for k, v in outputs.items()})
        if returncode != 0:
            break
    return runs


def database_url(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def psql(url: str, sql: str) -> str:
    """Run SQL with the server's own psql; the unaligned, tuples-only output."""
    psql_bin = find_psql(find_bindir())
    assert psql_bin is not None, "psql not found"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run(
        [psql_bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"psql failed on {sql!r}:\n{result.stdout}{result.stderr}"
    return result.stdout.strip()


def branch_from(parent_url: str, name: str) -> str:
    """A copy of the parent database (its schema and rows): the local stand-in for a branch."""
    parent = urlsplit(parent_url).path.lstrip("/")
    maintenance = database_url(parent_url, "postgres")
    psql(maintenance, f"DROP DATABASE IF EXISTS {name}")
    psql(maintenance, f"CREATE DATABASE {name} TEMPLATE {parent}")
    return database_url(parent_url, name)
