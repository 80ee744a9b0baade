"""Render-time benchmark: how long `copier copy` takes for each variant.

Run from the repository root:  uv run python bench/render.py [--repeat 5]
Renders the working tree (HEAD plus uncommitted changes) into temporary directories and
prints the median, min and max wall time per variant. Not a test: nothing is asserted.
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from copier import run_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from variants import VARIANTS, answers  # noqa: E402


def render_once(name: str) -> float:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DirtyLocalWarning on an uncommitted tree
        start = time.perf_counter()
        run_copy(str(ROOT), tmp, data=answers(name), defaults=True, vcs_ref="HEAD", quiet=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    print(f"{'variant':<28} {'median':>8} {'min':>8} {'max':>8}  (seconds, {args.repeat} runs)")
    for name in args.variants:
        times = [render_once(name) for _ in range(args.repeat)]
        print(f"{name:<28} {statistics.median(times):>8.3f} {min(times):>8.3f} {max(times):>8.3f}")


if __name__ == "__main__":
    main()
