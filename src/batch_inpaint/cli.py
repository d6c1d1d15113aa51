"""The command line: parse arguments, build settings, call the library, map errors to exit codes
(`ExitCode` holds the table)."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import anyio
import anyio.abc

from . import __version__
from .errors import ConfigError, LockHeld, ManifestError, OutputError, first_error
from .buckets import location
from .exitcodes import EXIT_MEANINGS, ExitCode
from .settings import (
    ENGINES, EXPORT_FORMATS, LOCAL_METHODS, LOG_FORMATS, MODES, NOTIFY_ON, OUTPUT_FORMATS, OVERSIZE, PROGRESS_MODES,
    SUMMARY_FORMATS, Settings, build_settings,
)
from .store import Store


RUN_USAGE = "%(prog)s INPUT -o OUT [--masks DIR | --mask FILE | --pairs FILE] [options]"
WATCH_USAGE = "%(prog)s INPUT -o OUT [--masks DIR | --mask FILE] [--settle SECONDS] [options]"
EXAMPLES = """examples:
  batch-inpaint run photos --masks masks -o cleaned          # Clipdrop; the key in CLIPDROP_API_KEY
  batch-inpaint run photos --mask logo.png -o cleaned --engine local
  batch-inpaint plan photos --masks masks -o cleaned         # what a run would do and cost, no request
  batch-inpaint run s3://data/photos --masks s3://data/masks -o s3://data/cleaned   # pip install 'batch-inpaint[s3]'
  batch-inpaint run -c nightly.toml -q                       # settings from a file, no progress display
  batch-inpaint status cleaned
  batch-inpaint export cleaned --format jsonl > items.jsonl"""


def _exit_codes() -> str:
    return "exit codes:\n" + "\n".join(f"  {int(code):<4} {EXIT_MEANINGS[code]}" for code in ExitCode)


def _run_options(p: argparse.ArgumentParser, *, plan: bool = False) -> None:
    """The options of `run`; `plan` takes those that change what a run would do, not how it shows it."""
    p.add_argument("input_dir", nargs="?", type=location, metavar="INPUT",
                   help="folder of photos, or a bucket's URL: s3://BUCKET/PREFIX (omit with --pairs)")
    p.add_argument("-o", "--out", dest="out_dir", type=location, metavar="OUT",
                   help="output folder or bucket URL, mirroring the input tree (required; or out in the config file)")
    p.add_argument("-c", "--config", type=Path, metavar="FILE", help="TOML settings file (see configs/)")
    if not plan:
        quiet = p.add_mutually_exclusive_group()
        quiet.add_argument("-q", "--quiet", action="store_true",
                           help="no progress display, only the summary (as --progress none)")
        quiet.add_argument("-v", "--verbose", action="store_const", const=True,
                           help="a line for every item as it is settled")
    g = p.add_argument_group("pairing")
    g.add_argument("--masks", dest="masks_dir", type=location, metavar="DIR",
                   help="mirror folder (or URL) of masks (same relative path and stem)")
    g.add_argument("--mask", dest="mask_file", type=location, metavar="FILE",
                   help="one mask for every image (a fixed watermark)")
    g.add_argument("--pairs", dest="pairs_file", type=location, metavar="FILE",
                   help="CSV or JSONL list: image, mask[, output]")
    g.add_argument("--mask-suffix", metavar="SUFFIX", help="sibling mask suffix (default _mask: x.jpg + x_mask.png)")
    g.add_argument("--masks-from", metavar="coco:FILE.json|yolo:LABELS_DIR",
                   help="draw the masks from annotations: every object of --classes, each grown by --dilate "
                        "(default 15%% of its size)")
    g.add_argument("--classes", action="append", metavar="NAME[,NAME...]",
                   help="with --masks-from: the classes to remove, names or ids (default all; repeatable)")
    g.add_argument("--yolo-names", type=Path, metavar="FILE",
                   help="YOLO class names: a names file or a data.yaml (default LABELS_DIR/classes.txt)")
    g.add_argument("--save-masks", type=Path, metavar="DIR", help="write each mask drawn from annotations here")
    g.add_argument("--no-recursive", dest="recursive", action="store_const", const=False, help="only the top folder")
    g.add_argument("--follow-symlinks", action="store_const", const=True, help="follow symbolic links")
    g.add_argument("--include", action="append", metavar="GLOB", help="glob of images to take (repeatable)")
    g.add_argument("--exclude", action="append", metavar="GLOB", help="glob of images to skip (repeatable)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, help="clipdrop (default) or local (offline, OpenCV)")
    g.add_argument("--api-url", metavar="URL", help="API endpoint (env CLIPDROP_API_URL)")
    g.add_argument("--api-key-file", type=Path, metavar="FILE", help="file holding the API key (or env CLIPDROP_API_KEY)")
    g.add_argument("--ca-bundle", type=Path, metavar="FILE", help="CA bundle for TLS verification (always on)")
    g.add_argument("--rate", type=float, metavar="PER_MINUTE", help="requests per minute (default 60); lowered while "
                   "the API's 429s show a lower limit")
    g.add_argument("--rate-window", type=float, metavar="SECONDS",
                   help="length of the window the API counts requests in (default 60)")
    g.add_argument("--limiter", metavar="host|process|postgresql://USER@HOST/DB",
                   help="who shares the key's rate limit: every run on this host (default), this run alone, "
                        "or every run using this Postgres database (env BATCH_INPAINT_LIMITER)")
    g.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default: from the rate)")
    g.add_argument("--mode", choices=MODES, help="Clipdrop mode (default fast)")
    g.add_argument("--local-method", choices=LOCAL_METHODS, help="local engine: Telea or Navier-Stokes")
    g.add_argument("--max-attempts", type=int, metavar="N", help="attempts per item before it fails (default 8)")
    g.add_argument("--retry-runs", type=int, metavar="N",
                   help="runs in a row that retry an item which failed on server or network errors (default 3)")
    g.add_argument("--outage-seconds", type=float, metavar="SECONDS",
                   help="stop (exit 7, items left pending) when the API has not answered for this long (default 60)")
    _storage_option(p.add_argument_group("buckets (s3://, gs://, az://)"))  # type: ignore[arg-type]
    g = p.add_argument_group("manifest and credits")
    g.add_argument("--manifest", metavar="FILE|URL",
                   help="manifest file (default OUT/.batch-inpaint/manifest.sqlite3; with a bucket OUT, in the user's "
                        "state folder), or postgresql://USER@HOST/DB: "
                        "every run with the same one and --job shares the work (env BATCH_INPAINT_MANIFEST)")
    g.add_argument("--job", metavar="NAME", help="the job in a Postgres manifest (default: the output folder's path; "
                   "env BATCH_INPAINT_JOB)")
    g.add_argument("--lease", type=float, metavar="SECONDS", help="a Postgres manifest: how long a worker that "
                   "stopped answering keeps its items before others take them on (default 60)")
    g.add_argument("--retry-failed", action="store_const", const=True, help="send items that failed before again")
    g.add_argument("--adopt-existing", action="store_const", const=True,
                   help="take every output already in OUT as done, not only those newer than their image and mask")
    g.add_argument("--force", action="store_const", const=True,
                   help="redo every item, paying again (outputs already there too)")
    g.add_argument("--max-credits", type=float, metavar="N", help="spend at most this many credits in this run")
    g = p.add_argument_group("preflight and output")
    g.add_argument("--threshold", dest="mask_threshold", type=int, metavar="0-255",
                   help="mask grey level counted as white (default 128)")
    g.add_argument("--dilate", metavar="PIXELS|PERCENT", help="grow masks: pixels ('12') or percent of the object ('15%%')")
    g.add_argument("--resize-mask", action="store_const", const=True, help="resize masks of another size (nearest)")
    g.add_argument("--oversize", choices=OVERSIZE, help="over 16 MP: downscale (default), crop, fail")
    g.add_argument("--copy-empty", action="store_const", const=True, help="copy the original when its mask is empty")
    g.add_argument("--output-format", choices=OUTPUT_FORMATS, help="output format (default png)")
    g.add_argument("--quality", type=int, metavar="1-100", help="JPEG/WebP quality (default 92)")
    g.add_argument("--no-keep-answers", dest="keep_answers", action="store_const", const=False,
                   help="do not keep the API's answers beside JPEG/WebP outputs (a later format change then "
                        "costs a credit a picture)")
    if plan:  # accepted, so a run's command line plans as it is, but not listed: they change nothing here
        p.add_argument("--dry-run", action="store_const", const=True, help=argparse.SUPPRESS)
        p.add_argument("--progress", choices=PROGRESS_MODES, help=argparse.SUPPRESS)
        p.add_argument("--summary", choices=SUMMARY_FORMATS, help=argparse.SUPPRESS)
        p.add_argument("--log-format", choices=LOG_FORMATS, help=argparse.SUPPRESS)
        p.add_argument("--metrics-file", type=Path, help=argparse.SUPPRESS)
        p.add_argument("--notify", dest="notify_url", help=argparse.SUPPRESS)
        p.add_argument("--notify-on", choices=NOTIFY_ON, help=argparse.SUPPRESS)
        return
    g = p.add_argument_group("display")
    g.add_argument("--dry-run", action="store_const", const=True, help="plan only: walk and preflight, no request")
    g.add_argument("--progress", choices=PROGRESS_MODES, help="progress display (default auto: a bar on a terminal, "
                   "otherwise a line a minute and each failure)")
    g.add_argument("--summary", choices=SUMMARY_FORMATS, help="json: also print the summary as one JSON object on "
                   "standard output, for scripts (default text)")
    g.add_argument("--no-report", dest="report", action="store_const", const=False,
                   help="no HTML report at the end, and no thumbnail or flags made while the run writes results")
    g.add_argument("--report-dir", type=Path, metavar="DIR", help="write the report here (default OUT/.batch-inpaint/report)")
    g = p.add_argument_group("scheduled runs")
    g.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json: one JSON object per event on "
                   "standard error, for log collectors (env BATCH_INPAINT_LOG_FORMAT)")
    g.add_argument("--metrics-file", type=Path, metavar="FILE", help="write Prometheus metrics here during the run "
                   "and at its end, for node_exporter's textfile collector (a .prom file)")
    g.add_argument("--notify", dest="notify_url", metavar="URL", help="POST a short JSON summary here at the end of a "
                   "run, e.g. a Slack webhook (env BATCH_INPAINT_NOTIFY_URL)")
    g.add_argument("--notify-on", choices=NOTIFY_ON, help="failures (default: a run that exits other than 0) or always")


_SETTING_FLAGS = ("input_dir", "out_dir", "masks_dir", "mask_file", "pairs_file", "mask_suffix", "masks_from",
                  "classes", "yolo_names", "save_masks", "recursive",
                  "follow_symlinks", "include", "exclude", "engine", "api_url", "api_key_file", "ca_bundle", "rate",
                  "rate_window", "limiter", "concurrency", "mode", "local_method", "max_attempts", "retry_runs",
                  "outage_seconds", "manifest", "job", "lease", "retry_failed", "force", "adopt_existing",
                  "max_credits", "mask_threshold", "dilate", "resize_mask", "oversize", "copy_empty",
                  "output_format", "quality", "keep_answers", "dry_run", "progress", "summary", "verbose",
                  "report", "report_dir", "log_format", "metrics_file", "notify_url", "notify_on", "settle", "poll",
                  "storage_options")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    if getattr(args, "quiet", False):
        values["progress"] = "none"
    for name in ("include", "exclude", "classes", "storage_options"):
        patterns: list[str] | None = values[name]
        if patterns is not None:
            values[name] = tuple(patterns)
    return values


def _manifest_options(p: argparse.ArgumentParser) -> None:
    _storage_option(p)
    p.add_argument("--manifest", metavar="FILE|URL", help="the manifest, if not in OUT/.batch-inpaint/: a file, or "
                   "a Postgres job's postgresql://USER@HOST/DB (env BATCH_INPAINT_MANIFEST)")
    p.add_argument("--job", metavar="NAME", help="the job in a Postgres manifest (default: OUT's path; env "
                   "BATCH_INPAINT_JOB)")


def _storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", dest="storage_options", action="append", metavar="KEY=VALUE",
                   help="an option for the store's fsspec file system, e.g. endpoint_url=http://minio:9000 "
                        "or anon=true (repeatable; credentials come the store's standard way)")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="batch-inpaint", description="Remove objects from folders of photos: "
                                     "every image with its mask, through the Clipdrop API or a local engine.",
                                     epilog=f"{EXAMPLES}\n\n{_exit_codes()}", formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"batch-inpaint {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="inpaint every image that has a mask", usage=RUN_USAGE, formatter_class=formatter,
                       description="Inpaint every image that has a mask; a re-run does only what is new or changed.",
                       epilog=f"{EXAMPLES}\n\n{_exit_codes()}")
    _run_options(p)
    p.set_defaults(usage=p.format_usage())
    p = sub.add_parser("plan", help="walk and preflight only: what a run would do and cost",
                       usage=RUN_USAGE, formatter_class=formatter,
                       description="Walk and preflight as a run would, send nothing, and say what it would cost. "
                                   "Exits as the run would (1 when items are invalid or failed before).")
    _run_options(p, plan=True)
    p.set_defaults(usage=p.format_usage())
    p = sub.add_parser("watch", help="stay running: inpaint pairs as they arrive", usage=WATCH_USAGE,
                       formatter_class=formatter,
                       description="Stay running and inpaint new and changed pairs as they arrive, with the manifest, "
                                   "lock, limiter and exit codes of run. A file is sent once it has stopped changing "
                                   "for --settle seconds. SIGTERM or Ctrl-C stops it gracefully.",
                       epilog=_exit_codes())
    _run_options(p)
    g = p.add_argument_group("watch")
    g.add_argument("--settle", type=float, metavar="SECONDS",
                   help="a file counts once its size and mtime have not changed for this long (default 5)")
    g.add_argument("--poll", action="store_const", const=True, help="poll the folders instead of waiting for the file "
                   "system's events (found by itself for NFS, SMB and FUSE)")
    p.set_defaults(usage=p.format_usage())
    p = sub.add_parser("status", help="counts, credits and failures of an output folder",
                       description="Counts, credits and failures of an output folder, from its manifest; while runs "
                                   "are active, which runs share the key's rate limit.")
    p.add_argument("out_dir", type=location, metavar="OUT", help="the output folder (or bucket URL) of a run")
    _manifest_options(p)
    p.add_argument("--limiter", metavar="host|postgresql://USER@HOST/DB",
                   help="where runs share the key's rate limit, to show who does (env BATCH_INPAINT_LIMITER)")
    p = sub.add_parser("export", help="one row per item, for dataset pipelines",
                       description="One row per item the walk saw (README lists the fields): status, paths, "
                                   "credits, attempts, times.")
    p.add_argument("out_dir", type=location, metavar="OUT", help="the output folder (or bucket URL) of a run")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="csv (default) or jsonl, one object a line")
    _manifest_options(p)
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here instead of standard output")
    p = sub.add_parser("report", help="write the HTML report of an output folder",
                       description="Write (or bring up to date) the HTML report of an output folder: figures, "
                                   "failures, flagged results and every result beside its original. It opens "
                                   "from the disk; its path is printed.")
    p.add_argument("out_dir", type=location, metavar="OUT", help="the output folder (or bucket URL) of a run")
    p.add_argument("--report-dir", type=Path, metavar="DIR", help="write it here (default OUT/.batch-inpaint/report)")
    _manifest_options(p)
    from .emulator.cli import add_emulator_parser

    add_emulator_parser(sub)
    return parser


def _tune_allocators() -> None:
    """Keep a long run's peak memory where a short run's is.

    glibc keeps freed multi-megabyte buffers (uploads, answers) in per-thread arenas, so RSS creeps up
    to several times what is in use: a fixed mmap threshold hands every buffer over 1 MB back to the
    kernel when freed, and two arenas serve all threads (a no-op where the C library is not glibc).
    Decoded pictures go the other way: Pillow keeps a few freed pixel blocks for the next picture
    instead of mapping fresh ones each time, so the peak is reached within the first pictures instead
    of creeping up as rare overlaps of decodes happen, and no page faults are paid per picture.
    Setting the mmap threshold also fixes the trim threshold at 128 KB: the heap gave back the pieces
    of each answer as soon as they were written and faulted them in again for the next (12 ms of a
    16 MB answer's 50 ms); up to 64 MB of free heap is now kept for the next answer.
    """
    os.environ.setdefault("PILLOW_BLOCKS_MAX", str(2 * (os.cpu_count() or 2)))  # read when PIL is imported
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX: fewer per-thread arenas, less memory stranded between them
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    _tune_allocators()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _command(args)
    except BrokenPipeError:  # the reader of our output went away (export | head): end quietly
        from .pipes import silence

        silence(sys.stdout)
        return ExitCode.BROKEN_PIPE


def _command(args: argparse.Namespace) -> int:
    if args.command in ("run", "watch"):
        from .pipes import Forgiving

        sys.stdout, sys.stderr = Forgiving(sys.stdout), Forgiving(sys.stderr)
    json_log = (getattr(args, "log_format", None) or os.environ.get("BATCH_INPAINT_LOG_FORMAT")) == "json"
    try:
        if args.command in ("run", "plan", "watch"):
            settings = build_settings(_flags(args), config_file=args.config)
            json_log = settings.log_format == "json" and args.command != "plan"
            if settings.input_dir is None and settings.pairs_file is None or settings.out_dir is None:
                missing = " and ".join(what for what, lacking in (
                    ("an input folder (or --pairs FILE)", settings.input_dir is None and settings.pairs_file is None),
                    ("an output folder (-o OUT)", settings.out_dir is None)) if lacking)
                print(args.usage, end="", file=sys.stderr)
                print(f"batch-inpaint {args.command}: error: give {missing}", file=sys.stderr)
                return ExitCode.USAGE
            if args.command == "plan" or settings.dry_run:
                from .planning import print_plan

                return print_plan(settings)
            return _run(settings, watching=args.command == "watch")
        if args.command in ("status", "export", "report"):
            return _report(args)
        from .emulator.cli import run_emulator

        return run_emulator(args)
    except LockHeld as exc:
        return _failed(json_log, str(exc), exc.exit_code)
    except (ConfigError, ManifestError) as exc:
        return _failed(json_log, f"error: {exc}", exc.exit_code)
    except Exception as exc:  # a bug: a collector reading JSON lines gets it as one, traceback and all
        if not json_log:
            raise
        import traceback

        from .events import JsonLines

        JsonLines()("crash", "error", {"message": f"{type(exc).__name__}: {exc}", "exit_code": int(ExitCode.FAILED),
                                       "traceback": traceback.format_exc()})
        return ExitCode.FAILED


def _failed(json_log: bool, message: str, code: int) -> int:
    """A run that could not start: one line on stderr, JSON when the log is."""
    if json_log:
        from .events import JsonLines

        JsonLines()("error", "error", {"message": message.removeprefix("error: "), "exit_code": int(code)})
    else:
        print(f"batch-inpaint: {message}", file=sys.stderr)
    return code


def _run(settings: Any, *, watching: bool = False) -> int:
    """Run a batch (or watch) with signal handling: first SIGINT/SIGTERM stops gently, a second at once."""
    import importlib

    from . import progress
    from .ending import Ending
    from .runner import run_batch

    started: list[Any] = []  # the RunControl of the run, or the Watch
    early_signal: list[int] = []
    ending = Ending(settings)

    async def watch_signals(tg: anyio.abc.TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                code = ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED
                if not started:  # still checking inputs: nothing sent, nothing to flush
                    early_signal.append(code)
                    tg.cancel_scope.cancel()
                    return
                control = started[0]
                if control.signal_exit is not None:
                    ending.say("stopping now")
                else:
                    ending.say("stopping: no new requests; send the signal again to stop at once")
                control.stop(exit_code=code)

    async def main_task() -> int | None:
        code: int | None = None
        observer = progress.choose(settings.progress, sys.stderr, settings.log_format)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, tg)
            if watching:
                from .watching import watch_batch

                code = await watch_batch(settings, observer=observer, on_start=ending.on_watch(started),
                                         on_pass=ending.finished)
                ending.watch_stopped(code)
            else:
                result = await run_batch(settings, observer=observer, on_start=started.append)
                await ending.finished(result)
                code = result.exit_code
            tg.cancel_scope.cancel()
        return code

    importlib.import_module(f".engines.{settings.engine}", __package__)  # loaded before gc.freeze below
    # The modules loaded so far (NumPy, OpenCV, Pillow, ...) hold hundreds of thousands of objects
    # that live as long as the process: keep the cyclic collector from walking them again and again.
    gc.freeze()
    try:
        code = anyio.run(main_task)
    except BaseExceptionGroup as group:
        first = first_error(group)
        if first is not None:
            raise first from None
        raise
    if code is None:
        return early_signal[0] if early_signal else ExitCode.INTERRUPTED
    return code


def _report(args: argparse.Namespace) -> int:
    from .runner import open_store
    from .settings import build_settings

    try:
        settings = build_settings({"out_dir": args.out_dir, "manifest": args.manifest, "job": args.job,
                                   "storage_options": tuple(args.storage_options or ())})
    except ConfigError as exc:
        print(f"batch-inpaint: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if settings.fleet_manifest is None and not settings.manifest_path.is_file():
        print(f"batch-inpaint: error: no manifest at {settings.manifest_path} (has a run used this output folder?)",
              file=sys.stderr)
        return ExitCode.USAGE

    async def report() -> int:
        try:
            store = await open_store(settings, create=False)
        except (ConfigError, ManifestError) as exc:
            print(f"batch-inpaint: error: {exc}", file=sys.stderr)
            return int(exc.exit_code)
        try:
            return await _report_from(store, args, settings)
        finally:
            await store.aclose()

    return anyio.run(report)


async def _report_from(store: Store, args: argparse.Namespace, settings: Settings) -> int:
    from .reports import export, sharing_report, status_report

    if args.command == "report":
        from .htmlreport import write_report
        from .locations import report_dir

        try:
            written = await write_report(store, args.out_dir, report_dir(args.out_dir, args.report_dir))
        except OutputError as exc:
            print(f"batch-inpaint: error: the report cannot be written: {exc}", file=sys.stderr)
            return ExitCode.UNWRITABLE
        note = f" ({written.missing_strips} results without a thumbnail yet)" if written.missing_strips else ""
        print(f"batch-inpaint: report of {written.items} items{note}: {written.index}", file=sys.stderr)
        print(written.index)
        return ExitCode.OK
    if args.command == "status":
        print(await status_report(store))
        from .limiter.build import runs_sharing

        limiter = args.limiter or os.environ.get("BATCH_INPAINT_LIMITER") or settings.limit_sharing
        print(sharing_report(await runs_sharing(args.out_dir, limiter), args.out_dir))
        return ExitCode.OK
    if args.output:
        with args.output.open("w", encoding="utf-8", newline="") as fh:
            count = await export(store, args.format, fh, args.out_dir)
    else:
        count = await export(store, args.format, sys.stdout, args.out_dir)
    print(f"batch-inpaint: exported {count} items", file=sys.stderr)
    return ExitCode.OK
