"""The process exit codes: one table that the errors, the CLI, the manifest and README all read."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  #: every item is done
    FAILED = 1  #: some items failed or were invalid
    USAGE = 2  #: usage or configuration error (also a certificate that does not verify)
    KEY_REJECTED = 3  #: the API rejected the key (401/403)
    OUT_OF_CREDITS = 4  #: out of credits (402), or the --max-credits budget is spent
    LOCKED = 5  #: another run holds the output folder
    UNWRITABLE = 6  #: the output folder or the manifest cannot be written or read
    API_UNREACHABLE = 7  #: the API could not be reached for a while: the run stopped, items left pending
    INTERRUPTED = 130  #: SIGINT
    BROKEN_PIPE = 141  #: the reader of standard output went away (export | head); as 128 + SIGPIPE
    TERMINATED = 143  #: SIGTERM


#: What each code means, as `--help` shows it (README's table says more).
EXIT_MEANINGS = {
    ExitCode.OK: "every item is done",
    ExitCode.FAILED: "some items failed or were invalid (the summary names each)",
    ExitCode.USAGE: "usage or configuration error (also a missing key, a certificate that does not verify)",
    ExitCode.KEY_REJECTED: "the API rejected the key",
    ExitCode.OUT_OF_CREDITS: "out of credits, or the --max-credits budget is spent",
    ExitCode.LOCKED: "another run holds the output folder",
    ExitCode.UNWRITABLE: "the output folder or the manifest cannot be written or read",
    ExitCode.API_UNREACHABLE: "the API could not be reached: items left pending for the next run",
    ExitCode.INTERRUPTED: "interrupted (SIGINT): run the same command again to continue",
    ExitCode.BROKEN_PIPE: "the reader of the output went away (export | head)",
    ExitCode.TERMINATED: "terminated (SIGTERM): run the same command again to continue",
}
