"""2. Cost per picture: CPU seconds batch-inpaint spends per pair outside the server.

Walk, preflight, hashing, upload, checking the response, writing and the manifest, for 1 MP and 12 MP
JPEG pairs, against an emulator with no latency and no limit that echoes the picture back as a PNG.
The marginal cost per pair is (CPU for N pairs - CPU for 1 pair) / (N - 1), from the child's own
rusage. Beside it, in the same run: decoding the mask with Pillow (the floor) and posting the same
bytes to a sink (the upload). For context, also the CPU of the whole exchange with the echo
endpoint through httpx.AsyncClient, the client the tool is built on: the upload plus receiving an
answer as big as the picture, which the target leaves out, and a floor that no client of this
API can go under: one mask decode, that exchange, and writing the answer to disk with an fsync.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time

import anyio
import httpx
from PIL import Image

from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

from .common import WORK, emulator, measured_cli, median

SIZES = {"1 MP": (1155, 866), "12 MP": (4000, 3000)}
PAIRS = {"1 MP": 60, "12 MP": 12}  # enough that start-up noise is small beside the marginal cost


def make_pairs(root, size: tuple[int, int], count: int) -> None:  # type: ignore[no-untyped-def]
    if (root / "photos").exists() and len(list((root / "photos").iterdir())) == count:
        return
    shutil.rmtree(root, ignore_errors=True)
    (root / "photos").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(count):
        picture, mask = scene(*size, seed=200 + i)
        (root / "photos" / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(picture, quality=90))
        (root / "masks" / f"p{i:03d}.png").write_bytes(png_bytes(mask))


def cli_cpu(root, url: str, count: int) -> float:  # type: ignore[no-untyped-def]
    photos = root / "photos"
    subset = WORK / "cost-subset"
    shutil.rmtree(subset, ignore_errors=True)
    (subset / "photos").mkdir(parents=True)
    (subset / "masks").mkdir(parents=True)
    for name in sorted(os.listdir(photos))[:count]:
        os.link(photos / name, subset / "photos" / name)
        os.link(root / "masks" / name.replace(".jpg", ".png"), subset / "masks" / name.replace(".jpg", ".png"))
    out = WORK / "cost-out"
    shutil.rmtree(out, ignore_errors=True)
    run = measured_cli("run", str(subset / "photos"), "--masks", str(subset / "masks"), "--out", str(out),
                       "--api-url", url, "--rate", "100000", "--progress", "none", env={"CLIPDROP_API_KEY": "bench-key"})
    assert run.returncode == 0, run.stderr[-2000:]
    return run.cpu


async def _async_exchanges(url: str, uploads: list[dict]) -> tuple[list[float], bytes]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(timeout=120, headers={"x-api-key": "bench-key"}) as client:
        (await client.post(url, files=uploads[0])).raise_for_status()  # connection and lazy imports first
        spent = []
        for files in uploads:
            t = time.process_time()
            answer = await client.post(url, files=files)
            answer.raise_for_status()
            spent.append(time.process_time() - t)
    return spent, answer.content


def _write_fsync(data: bytes, times: int = 5) -> float:
    """CPU to write an answer to a new file and fsync it, median of a few."""
    target = WORK / "cost-write-probe.png"
    spent = []
    for _ in range(times):
        t = time.process_time()
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        spent.append(time.process_time() - t)
        target.unlink()
    return median(spent)


def floors(root, url: str) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """Per pair: CPU to decode the mask with Pillow, to post image and mask to a sink, to post them to
    the echo endpoint and read its answer with the async client, and to write that answer with an fsync."""
    decode, upload, uploads = [], [], []
    sink = url.replace("/cleanup/v1", "/_sink")
    with httpx.Client(timeout=120) as client:
        for photo in sorted((root / "photos").iterdir()):
            mask = (root / "masks" / photo.name.replace(".jpg", ".png")).read_bytes()
            t = time.process_time()
            with Image.open(io.BytesIO(mask)) as im:
                im.load()
            decode.append(time.process_time() - t)
            files = {"image_file": ("i.jpg", photo.read_bytes(), "image/jpeg"), "mask_file": ("m.png", mask, "image/png")}
            t = time.process_time()
            client.post(sink, files=files)
            upload.append(time.process_time() - t)
            uploads.append(files)
    exchange, answer = anyio.run(_async_exchanges, url, uploads)
    return median(decode), median(upload), median(exchange), _write_fsync(answer)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the pair counts (60 at 1 MP, 12 at 12 MP)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with emulator("--rate", "1000000", "--work", "echo", name="cost") as emu:
        for label, size in SIZES.items():
            root = WORK / f"cost-{label.replace(' ', '')}"
            pairs = max(3, int(PAIRS[label] * args.scale))
            make_pairs(root, size, pairs)
            per_pair, decode, upload, exchange, write = [], [], [], [], []
            for _ in range(args.runs):  # interleaved, so a busy moment shifts every side alike
                one = cli_cpu(root, emu.url, 1)
                many = cli_cpu(root, emu.url, pairs)
                per_pair.append((many - one) / (pairs - 1))
                d, u, e, w = floors(root, emu.url)
                decode.append(d)
                upload.append(u)
                exchange.append(e)
                write.append(w)
            row = {"pairs": pairs, "per pair": median(per_pair), "mask decode": median(decode), "upload": median(upload),
                   "async exchange": median(exchange), "write": median(write)}
            row["target"] = 2 * row["mask decode"] + row["upload"]
            row["ratio to target"] = row["per pair"] / row["target"]
            results[label] = row
    print(f"cost per picture: CPU per pair, median of {args.runs} runs (marginal over N pairs minus 1 pair)")
    for label, row in results.items():
        print(f"  {label:6s} N={row['pairs']:.0f} batch-inpaint {row['per pair'] * 1000:7.1f} ms   mask decode {row['mask decode'] * 1000:6.1f} ms"
              f"   upload {row['upload'] * 1000:6.1f} ms   target (2x decode + upload) {row['target'] * 1000:7.1f} ms"
              f"   ratio {row['ratio to target']:.2f}")
    print("  for context: the same upload plus the answer through httpx.AsyncClient, against 2x decode + that")
    for label, row in results.items():
        context = 2 * row["mask decode"] + row["async exchange"]
        print(f"  {label:6s} async exchange {row['async exchange'] * 1000:7.1f} ms   2x decode + exchange {context * 1000:7.1f} ms"
              f"   ratio {row['per pair'] / context:.2f}")
    print("  floor of any client: one mask decode + that exchange + writing the answer with an fsync")
    for label, row in results.items():
        floor = row["mask decode"] + row["async exchange"] + row["write"]
        print(f"  {label:6s} write+fsync {row['write'] * 1000:7.1f} ms   floor {floor * 1000:7.1f} ms"
              f"   target / floor {row['target'] / floor:.2f}   batch-inpaint / floor {row['per pair'] / floor:.2f}")
    return {"runs": args.runs, "table": results}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
