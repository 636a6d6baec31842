"""Processes the local stack owns: ports, process groups, PID records, health waits.

Every service runs in its own process group (``start_new_session``), so stopping it stops its
children too. A PID record also keeps the process's start time from ``/proc``, so a PID that
the kernel gave to some other program since is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class StackError(Exception):
    """A failure the CLI reports as one message: 2 bad input, 3 a service failed."""

    def __init__(self, message: str, *, exit_code: int = 3, service: str | None = None,
                 log: Path | None = None) -> None:
        super().__init__(message)
        self.exit_code, self.service, self.log = exit_code, service, log


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers do: connections of a stopped server in TIME_WAIT do not block the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def tail(path: Path | None, n: int = 40) -> str:
    """The last ``n`` lines of a log file (or a placeholder)."""
    if path is None:
        return "<no log>"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is gone for our purposes
        return None
    return int(fields[19])


@dataclass
class PidRecord:
    """What ``up`` wrote about one service it started (``.local/run/<name>.json``)."""

    name: str
    pid: int
    start_time: int
    port: int
    log: str
    url: str

    def alive(self) -> bool:
        """The very process ``up`` started is still running (not a reused PID)."""
        return process_start_time(self.pid) == self.start_time

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> PidRecord:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise StackError(f"unreadable PID file {path} ({exc}): remove it, then run again",
                             exit_code=2) from exc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600 (temp file, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def spawn(cmd: list[str], *, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in a new process group with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def record_for(name: str, proc: subprocess.Popen, *, port: int, log: Path,
               url: str) -> PidRecord:
    """A PID record for a process this program just started."""
    started = process_start_time(proc.pid)
    if started is None:
        raise StackError(f"{name} exited at once ({proc.poll()}); log {log}:\n{tail(log)}",
                         service=name, log=log)
    return PidRecord(name, proc.pid, started, port, str(log), url)


def stop_group(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 30,
               is_alive: Callable[[], bool] | None = None) -> None:
    """Signal process group ``pid`` (a leader we started); SIGKILL after ``timeout``."""
    alive = is_alive or (lambda: process_start_time(pid) is not None)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        if not alive():
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM,
                 timeout: float = 30) -> None:
    """Stop a process we started (its whole process group)."""
    if proc.poll() is not None:
        return
    stop_group(proc.pid, sig=sig, timeout=timeout, is_alive=lambda: proc.poll() is None)


def wait_until(check: Callable[[], str | None], *, alive: Callable[[], bool], timeout: float,
               service: str, log: Path | None) -> None:
    """Poll ``check`` (None when healthy, else why not) until healthy, death or timeout."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"{service} exited while starting; log {log}:\n{tail(log)}",
                             service=service, log=log)
        last = check() or ""
        if not last:
            return
        time.sleep(0.5)
    raise StackError(f"{service} not healthy after {timeout:.0f}s ({last}); log {log}:\n"
                     f"{tail(log)}", service=service, log=log)


def http_check(url: str, *, ok: Callable[[int], bool] = lambda s: s < 500
               ) -> Callable[[], str | None]:
    """A ``wait_until`` check: GET ``url`` answers with a status ``ok`` accepts."""
    import httpx

    def check() -> str | None:
        try:
            r = httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if ok(r.status_code) else f"HTTP {r.status_code}"

    return check
