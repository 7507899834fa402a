"""A throwaway PostgreSQL server for the tests and benchmarks: initdb + pg_ctl in a temporary directory.

It listens on 127.0.0.1 on a free port with its unix socket inside the temporary directory, trusts local
connections (user `postgres`), and is removed on `stop()`. PostgreSQL refuses to run as root, so under
root it runs as the `postgres` OS user (or `nobody`) through `runuser`.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the server would not start; the message says which."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: PATH first, then Debian's /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for d in candidates:
        if all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres", "createdb")):
            return d
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' OS user exists")


class PostgresServer:
    """`fast=True` turns off fsync and friends: right for tests, wrong for benchmarks of durable commits."""

    SUPERUSER = "postgres"

    def __init__(self, *, fast: bool = True, max_connections: int = 200):
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; "
                "install the 'postgresql' OS package (make test does so when run as root)")
        self.bin_dir = bin_dir
        self.fast = fast
        self.max_connections = max_connections
        self.os_user = _run_as_user()
        self.base_dir = Path(tempfile.mkdtemp(prefix="voiceid-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "server.log"
        self.port = 0
        self.running = False

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.os_user, "--"] if self.os_user else []
        return [*prefix, *args]

    def _run(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, env=env, cwd=self.base_dir,
                              check=False)
        if proc.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise PostgresUnavailable(f"{Path(args[0]).name} failed ({proc.returncode}): "
                                      f"{proc.stderr.strip() or proc.stdout.strip()}\n{log}")

    def start(self) -> Self:
        self.socket_dir.mkdir()
        if self.os_user:
            shutil.chown(self.base_dir, self.os_user)
            shutil.chown(self.socket_dir, self.os_user)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        for attempt in range(5):
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                break
            except PostgresUnavailable:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        self.running = True
        atexit.register(self.stop)
        return self

    def _pg_ctl_start(self) -> None:
        options = [f"-c max_connections={self.max_connections}", f"-k {self.socket_dir}", "-h 127.0.0.1",
                   f"-p {self.port}"]
        if self.fast:
            options += ["-F", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-w", "-t", "60", "-o", " ".join(options), "start")

    def crash(self) -> None:
        """Stops the server abruptly, as a crash would (`start_again` brings it back on the same port and data)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def start_again(self) -> None:
        self._pg_ctl_start()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stops the server abruptly, as a crash would, and starts it again on the same port and data."""
        self.crash()
        time.sleep(down_seconds)
        self.start_again()

    def stop(self) -> None:
        if self.running:
            self.running = False
            subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                                     "-w", "stop"), capture_output=True, cwd=self.base_dir, check=False)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Creates `name` (optionally as a copy of `template`) and returns its URL."""
        args = [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.SUPERUSER]
        if template:
            args += ["-T", template]
        self._run(*args, name)
        return self.url(name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
