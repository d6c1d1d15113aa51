"""`batch-inpaint emulator`: the emulated API on 127.0.0.1, for tests, benchmarks and dry cron set-ups."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import FAULTS, WORK


def add_emulator_parser(sub: Any) -> None:
    p = sub.add_parser("emulator", help="serve an emulated Clipdrop cleanup API (127.0.0.1 by default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    p.add_argument("--key", action="append", metavar="KEY=CREDITS",
                   help="an accepted key and its credits (repeatable; default test-key=1000)")
    p.add_argument("--rate", type=float, default=60.0, help="requests per minute per key (default 60)")
    p.add_argument("--window-seconds", type=float, default=60.0,
                   help="window length; the limit scales with it (default 60)")
    p.add_argument("--window", choices=("sliding", "fixed", "bucket"), default="sliding",
                   help="rate-limit window kind (default sliding, counting rejected requests)")
    p.add_argument("--no-retry-after", dest="retry_after", action="store_false", help="send 429s without Retry-After")
    p.add_argument("--fault", action="append", metavar="KIND=RATE",
                   help=f"inject a fault at a rate 0..1 (repeatable); kinds: {', '.join(FAULTS)}")
    p.add_argument("--latency-mean", type=float, default=0.0, help="mean seconds per request (lognormal)")
    p.add_argument("--latency-spread", type=float, default=0.0, help="lognormal sigma: the tail's length")
    p.add_argument("--hang-seconds", type=float, default=3600.0, help="how long a 'hang' fault hangs")
    p.add_argument("--exif", choices=("ignore", "apply"), default="ignore", help="whether the server applies EXIF orientation")
    p.add_argument("--grey-masks", choices=("reject", "threshold"), default="reject", help="grey mask pixels: 400 or thresholded")
    p.add_argument("--work", choices=WORK, default="inpaint",
                   help="inpaint; echo the image back; blob: a flat fill; shift: inpaint and shift every colour; "
                        "stub: a flat picture (for client benchmarks)")
    p.add_argument("--seed", type=int, help="seed for faults and latency")
    p.add_argument("--log", type=Path, help="request log, JSON lines")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM; with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")


def _pairs(values: list[str] | None, what: str) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for value in values or []:
        name, sep, number = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            parsed[name] = float(number)
        except ValueError:
            raise ConfigError(f"--{what} takes NAME=NUMBER, not {value!r}") from None
    return parsed


def run_emulator(args: argparse.Namespace) -> int:
    from .config import EmulatorConfig
    from .server import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both to serve HTTPS, neither for HTTP")
    try:
        config = EmulatorConfig(
            keys=_pairs(args.key, "key") or {"test-key": 1000.0}, rate_per_minute=args.rate, window=args.window,
            window_seconds=args.window_seconds,
            retry_after=args.retry_after, faults=_pairs(args.fault, "fault"), latency_mean=args.latency_mean,
            latency_spread=args.latency_spread, hang_seconds=args.hang_seconds, seed=args.seed, log_path=args.log,
            exif=args.exif, grey_masks=args.grey_masks, work=args.work,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    def ready(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)

    try:
        tls = (str(args.tls_cert), str(args.tls_key)) if args.tls_cert and args.tls_key else None
        serve(config, args.host, args.port, on_ready=ready, tls=tls)
    except OSError as exc:
        print(f"batch-inpaint: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
