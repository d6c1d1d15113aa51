"""Run every benchmark and write benchmarks/RESULTS.md with the figures and the machine they came from.

    python -m benchmarks.run_all            # the full set (about 55 minutes on 2 cores)
    python -m benchmarks.run_all --quick    # smaller and shorter, for a first look (about 10 minutes)
"""

from __future__ import annotations

import argparse
import datetime
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

from . import (annotations, buckets, cost_per_picture, fleet, limit_below, local_engine, memory, noop_resume,
               rate_limit, report, shared_limit, watch)
from .common import machine

QUICK = {
    "rate": ["--minutes", "0.75", "--runs", "1"],
    "below": ["--windows", "3"],
    "shared": ["--windows", "2"],
    "cost": ["--scale", "0.5", "--runs", "1"],
    "memory": ["--small", "100", "--large", "400", "--runs", "1"],
    "noop": ["--items", "20000", "--runs", "3"],
    "local": ["--pictures", "40", "--runs", "1"],
    "report": ["--items", "10000", "--runs", "1"],
    "watch": ["--items", "20000", "--drops", "2"],
    "annotations": ["--runs", "2", "--images", "20000"],
    "fleet": ["--pictures", "80", "--runs", "1"],
    "buckets": ["--pairs", "5000", "--runs", "1", "--seconds", "20"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter runs")
    parser.add_argument("--only", nargs="*", choices=list(QUICK), help="run only these")
    return parser


STEPS = {"rate": rate_limit.main, "below": limit_below.main, "shared": shared_limit.main, "cost": cost_per_picture.main, "memory": memory.main, "noop": noop_resume.main,
         "local": local_engine.main, "report": report.main, "watch": watch.main,
         "annotations": annotations.main, "fleet": fleet.main, "buckets": buckets.main}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = list(STEPS.items())
    kept = Path(__file__).with_name("results")  # one file per benchmark: --only refreshes just those
    kept.mkdir(exist_ok=True)
    for name, run in steps:
        if args.only and name not in args.only:
            continue
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            run(QUICK[name] if args.quick else [])
        text = buffer.getvalue()
        print(text, end="", flush=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        (kept / f"{name}.txt").write_text(f"{stamp}{' --quick' if args.quick else ''}\n{text}")
    print(f"wrote {write_results(list(STEPS))}")
    return 0


def write_results(names: list[str]) -> Path:
    """RESULTS.md from the kept sections: each benchmark's latest run, then the side-by-side runs of ab.py."""
    kept = Path(__file__).with_name("results")
    body = ""
    for name in names:
        section = kept / f"{name}.txt"
        if section.exists():
            stamp, _, text = section.read_text().partition("\n")
            body += f"Run {stamp}:\n\n```\n{text.rstrip()}\n```\n\n"
    side_by_side = sorted(kept.glob("ab-*.txt"))
    if side_by_side:
        body += "## Side by side with another commit (`python -m benchmarks.ab`)\n\n"
    for section in side_by_side:
        stamp, _, text = section.read_text().partition("\n")
        body += f"Run {stamp}:\n\n```\n{text.rstrip()}\n```\n\n"
    results = Path(__file__).with_name("RESULTS.md")
    results.write_text(
        f"# Benchmark results\n\nOn {machine()}.\n"
        f"Made by `python -m benchmarks.run_all`; see each script's docstring for what it measures.\n\n{body}"
    )
    return results


if __name__ == "__main__":
    sys.exit(main())
