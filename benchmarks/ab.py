"""Side by side: the same benchmark against this checkout and another one (say, the commit before a
change), interleaved round by round so drift in the machine's speed hits both alike.

    git worktree add /tmp/before HEAD~1 && python3 -m venv /tmp/before-venv \\
        && /tmp/before-venv/bin/pip install -e /tmp/before
    ln -s "$PWD/benchmarks/.work" /tmp/before/benchmarks/.work     # both measure the same files
    python -m benchmarks.ab --other /tmp/before --other-python /tmp/before-venv/bin/python \\
        noop_resume -- --items 100000 --runs 3
"""

from __future__ import annotations

import argparse
import datetime
import io
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run(tree: Path, python: str, module: str, args: list[str]) -> str:
    """The benchmark's code from ``tree``, the library that ``python`` has installed."""
    done = subprocess.run([python, "-m", f"benchmarks.{module}", *args], cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        return f"  (failed, exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]})\n"
    return done.stdout


def commit(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--other-python", required=True, help="a Python with the other checkout installed")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each running the other first, then this")
    parser.add_argument("--same-benchmark", action="store_true",
                        help="run this checkout's benchmark code on both sides, so only the library differs")
    parser.add_argument("--save", action="store_true", help="keep the output in results/ab-MODULE.txt for RESULTS.md")
    parser.add_argument("module", help="benchmark module: rate_limit, memory, noop_resume, cost_per_picture, ...")
    parser.add_argument("args", nargs="*", help="arguments for the benchmark (after --)")
    args = parser.parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        print(f"{args.module} {' '.join(args.args)}: before = {commit(args.other)}, after = {commit(HERE)}")
    print(out.getvalue(), end="", flush=True)
    for round_no in range(1, args.rounds + 1):
        other_tree = HERE if args.same_benchmark else args.other
        for label, tree, python in (("before", other_tree, args.other_python), ("after", HERE, sys.executable)):
            text = f"--- round {round_no}, {label}\n" + run(tree, python, args.module, args.args)
            out.write(text)
            print(text, end="", flush=True)
    if args.save:
        from .run_all import STEPS, write_results

        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        (HERE / "benchmarks" / "results" / f"ab-{args.module}.txt").write_text(f"{stamp}\n{out.getvalue()}")
        write_results(list(STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
