"""2. Cost per picture: CPU a whole batch-inpaint process spends per pair, beside curl's for the same pairs.

The provider's own example is one `curl -F image_file=@... -F mask_file=@... -o result.png` per picture:
it only uploads the pair and saves the answer, so its CPU per pair is the floor of any client.

Pairs are JPEG photographs (quality 92) of 1 MP and 12 MP with sensor-like grain, not smooth drawings,
and PNG masks. The emulator answers as the API does, with a full-size PNG of the picture at zlib's
default level (about 16 MB at 12 MP), kept between requests so its encoder does not compete.

- curl: one process per pair, as in the provider's page; CPU of each from wait4, process start included.
- batch-inpaint: one `run` over the N pairs; CPU of the whole process (start-up, walk, preflight,
  manifest, answer checks, fsynced writes, the look at each result and the report) divided by N; and
  the same with --no-report (no look, no report), the client alone. Also the marginal cost, (CPU for
  N - CPU for 1) / (N - 1), what each further pair of a large batch costs.
Sides are interleaved run by run, so a busy moment shifts both alike; the figures are medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

from .common import WORK, emulator, measured_cli, median

SIZES = {"1 MP": (1155, 866), "12 MP": (4000, 3000)}
PAIRS = {"1 MP": 100, "12 MP": 32}  # a folder's worth: the start-up is a fair share, not the whole
GRAIN = 4.5  # levels of sensor-like noise: 3.4 MB JPEGs and 16 MB answer PNGs at 12 MP, as a real photograph's
TARGET = 3.0  # batch-inpaint's CPU per pair, at most this many times curl's


def make_pairs(root, size: tuple[int, int], count: int) -> None:  # type: ignore[no-untyped-def]
    stamp = root / f".made-{count}-{GRAIN}"
    if stamp.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    (root / "photos").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(count):
        picture, mask = scene(*size, seed=200 + i, grain=GRAIN)
        (root / "photos" / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(picture, quality=92))
        (root / "masks" / f"p{i:03d}.png").write_bytes(png_bytes(mask))
    stamp.touch()


def _subset(root, count: int):  # type: ignore[no-untyped-def]
    subset = WORK / "cost-subset"
    shutil.rmtree(subset, ignore_errors=True)
    (subset / "photos").mkdir(parents=True)
    (subset / "masks").mkdir(parents=True)
    for name in sorted(os.listdir(root / "photos"))[:count]:
        mask = name.replace(".jpg", ".png")
        os.link(root / "photos" / name, subset / "photos" / name)
        os.link(root / "masks" / mask, subset / "masks" / mask)
    return subset


def tool_cpu(root, url: str, count: int, *extra: str) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds of one whole `batch-inpaint run` over the first ``count`` pairs."""
    subset = _subset(root, count)
    out = WORK / "cost-out"
    shutil.rmtree(out, ignore_errors=True)
    run = measured_cli("run", str(subset / "photos"), "--masks", str(subset / "masks"), "--out", str(out),
                       "--api-url", url, "--rate", "100000", "--progress", "none", *extra,
                       env={"CLIPDROP_API_KEY": "bench-key"})
    assert run.returncode == 0, run.stderr[-2000:]
    return run.cpu


def curl_cpu(root, url: str, count: int) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds of one curl per pair over the first ``count`` pairs, as the provider's example runs."""
    out = WORK / "cost-curl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    total = 0.0
    for name in sorted(os.listdir(root / "photos"))[:count]:
        mask = root / "masks" / name.replace(".jpg", ".png")
        proc = subprocess.Popen(["curl", "-sS", "--fail", "-X", "POST", "-H", "x-api-key: bench-key",
                                 "-F", f"image_file=@{root / 'photos' / name}", "-F", f"mask_file=@{mask}",
                                 "-o", str(out / name.replace(".jpg", ".png")), url])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, f"curl exited {proc.returncode}"
        total += usage.ru_utime + usage.ru_stime
    return total


def checks_cpu(root, count: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """CPU per pair, measured alone in this process on the same pairs and curl's answers to them, of
    what a correct run does that curl does not: check the inputs before paying (read, hash, scan the
    JPEG, decode and count the mask), walk the answer's CRCs, write it atomically with fsync, and take
    the look at the result (its thumbnail strip and flags, `review.look`)."""
    import tempfile

    from batch_inpaint import png, review
    from batch_inpaint.output import write_atomic
    from batch_inpaint.pairing import Pair
    from batch_inpaint.pieces import Pieces
    from batch_inpaint.preflight import PreflightOptions, prepare

    spent = {"inputs": 0.0, "answer": 0.0, "write": 0.0, "look": 0.0}
    names = sorted(os.listdir(root / "photos"))[:count]
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        for name in names:
            stem = name.rsplit(".", 1)[0]
            pair = Pair(name, str(root / "photos" / name), str(root / "masks" / f"{stem}.png"), stem)
            answer = (WORK / "cost-curl" / f"{stem}.png").read_bytes()
            prepared = prepare(pair, PreflightOptions())
            for what, step in (("inputs", lambda: prepare(pair, PreflightOptions())),
                               ("answer", lambda: png.check(Pieces([answer]))),
                               ("write", lambda: write_atomic(Path(scratch, f"{stem}.png"), answer)),
                               ("look", lambda: review.look(prepared.image_bytes, prepared.mask_png, answer))):
                started = time.process_time()
                step()
                spent[what] += time.process_time() - started
    return {what: seconds / len(names) for what, seconds in spent.items()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the pair counts (100 at 1 MP, 32 at 12 MP)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", choices=sorted(SIZES), action="append", help="only this size (repeatable)")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for this benchmark (Debian: apt-get install curl)")
    results: dict[str, dict[str, float]] = {}
    with emulator("--rate", "1000000", "--work", "echo", name="cost") as emu:
        for label, size in SIZES.items():
            if args.size and label not in args.size:
                continue
            root = WORK / f"cost-{label.replace(' ', '')}"
            pairs = max(3, int(PAIRS[label] * args.scale))
            make_pairs(root, size, pairs)
            curl_cpu(root, emu.url, pairs)  # the emulator encodes each answer once, before anything is timed
            answer = max((WORK / "cost-curl").iterdir(), key=lambda p: p.stat().st_size).stat().st_size
            whole, bare, marginal, single, curl, checks = [], [], [], [], [], []
            for _ in range(args.runs):
                curl.append(curl_cpu(root, emu.url, pairs) / pairs)
                many = tool_cpu(root, emu.url, pairs)
                bare.append(tool_cpu(root, emu.url, pairs, "--no-report") / pairs)
                one = tool_cpu(root, emu.url, 1)
                whole.append(many / pairs)
                marginal.append((many - one) / (pairs - 1))
                single.append(one)
                checks.append(checks_cpu(root, pairs))
            results[label] = {"pairs": pairs, "answer MB": answer / 1e6, "curl": median(curl),
                              "whole": median(whole), "bare": median(bare), "marginal": median(marginal), "single": median(single),
                              **{what: median([c[what] for c in checks]) for what in checks[0]}}
    print(f"cost per picture: CPU per pair, batch-inpaint against one curl per pair, median of {args.runs} runs")
    print("  (JPEG photographs with grain, answers full-size PNGs; batch-inpaint's whole process, start-up included)")
    for label, row in results.items():
        ratio, bare = row["whole"] / row["curl"], row["bare"] / row["curl"]
        print(f"  {label:6s} N={row['pairs']:<3.0f} answer {row['answer MB']:4.1f} MB   curl {row['curl'] * 1000:5.1f} ms"
              f"   batch-inpaint {row['whole'] * 1000:6.1f} ms (ratio {ratio:.2f}; each further pair"
              f" {row['marginal'] * 1000:5.1f} ms, a run of one pair {row['single'] * 1000:4.0f} ms)")
        print(f"         without the look and the report (--no-report) {row['bare'] * 1000:6.1f} ms   ratio {bare:.2f}"
              f" (target <= {TARGET:g}: {'met' if bare <= TARGET else 'NOT met'})")
        kept = row["inputs"] + row["answer"] + row["write"] + row["look"]
        print(f"         of which work curl does not do, each alone: inputs {row['inputs'] * 1000:5.1f} ms (read,"
              f" hash, JPEG scan, mask decoded and counted), answer's CRCs {row['answer'] * 1000:4.1f} ms, fsynced"
              f" atomic write {row['write'] * 1000:4.1f} ms, the look (strip, flags) {row['look'] * 1000:5.1f} ms;"
              f" the rest {(row['whole'] - kept) * 1000:5.1f} ms, {(row['whole'] - kept) / row['curl']:.2f}x curl")
    return {"runs": args.runs, "table": results}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
