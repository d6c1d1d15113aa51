"""A throwaway Postgres cluster for the test session: Debian's binaries, a temporary folder, 127.0.0.1 on
a free port, a password login. ``initdb`` refuses to run as root, so as root it runs as ``postgres``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Never to be seen in any output, log, manifest or error: tests look for it.
PG_PASSWORD = "pg-canary-7c41e9b2"
PG_USER = "batch"


@dataclass(frozen=True)
class Postgres:
    url: str  #: with the password, as a user would pass it
    host: str
    port: int


def binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="batch-inpaint-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def start(self) -> Postgres:
        pwfile = self.folder / "password"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self._as_owner:
            shutil.chown(pwfile, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, "--pwfile", str(pwfile), "-A", "scram-sha-256",
                  "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", options, "start")
        return Postgres(f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/postgres", "127.0.0.1", self.port)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_owner, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")
