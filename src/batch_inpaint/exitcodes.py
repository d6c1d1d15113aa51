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
