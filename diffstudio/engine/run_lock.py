"""One writer per run: a lock file that names its holder (pid, host, start time).

Training takes the lock of its run for as long as it writes there; a second ``diffstudio train
--resume`` of the same run is refused with the holder's pid and host instead of interleaving
metrics.jsonl and rewriting the first one's checkpoints. Sampling and evaluation into a run do
not take it (they write only their own new folders).

The lock is a small JSON file that appears whole (written beside it, then hard-linked into
place, which fails when the lock exists: the exclusive create). A process killed with SIGKILL
leaves it behind; such a stale lock -- its pid is no longer alive on this host, or the pid has
been reused by a process started later -- is taken over. Taking over goes through a short-lived
second lock (``<lock>.break``), so two processes that both find the same stale lock cannot both
end up holding the new one. A lock held from another host cannot be checked and counts as held.

Importing this module is cheap (no torch): the window shows a locked run as busy.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffstudio.errors import RunError

__all__ = ["LockHolder", "RunLock", "pid_alive"]

# A break lock older than this was left by a process killed while breaking a stale lock (it is
# held for microseconds otherwise).
_BREAK_STALE_SECONDS = 30.0


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run's lock: ``pid`` on ``host`` since ``since`` (seconds since the epoch)."""

    pid: int
    host: str
    since: float
    token: str = ""
    started: float | None = None  # the holder's process start (boot ticks), when known

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        if self.pid < 0:
            return f"an unknown process (its lock file is unreadable; written {when})"
        return f"pid {self.pid} on {self.host} (since {when})"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (unknown counts as alive)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; cannot tell safely
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _process_start(pid: int) -> float | None:
    """A process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return float(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _read(path: Path) -> LockHolder | None:
    try:
        payload: Any = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(payload["pid"]), str(payload["host"]), float(payload["since"]),
                          str(payload.get("token", "")),
                          float(payload["started"]) if payload.get("started") is not None
                          else None)
    except FileNotFoundError:
        return None
    except (OSError, KeyError, TypeError, ValueError):
        # Unreadable or torn (written by an older or foreign tool): held by someone unknown.
        return LockHolder(-1, "unknown host", path.stat().st_mtime if path.exists() else 0.0)


def _stale(holder: LockHolder) -> bool:
    if holder.host != socket.gethostname() or holder.pid < 0:
        return False
    if not pid_alive(holder.pid):
        return True
    started = _process_start(holder.pid)
    return holder.started is not None and started is not None and started != holder.started


class RunLock:
    """The lock at ``path`` (a run's ``train.lock``). Use as a context manager, or
    :meth:`acquire` / :meth:`release`; :meth:`holder` says who holds it (None: free)."""

    def __init__(self, path: str | os.PathLike[str], what: str = "the run") -> None:
        self.path = Path(path)
        self.what = what
        self.token = ""

    def holder(self) -> LockHolder | None:
        """The live holder, or None when the lock is free or stale."""
        holder = _read(self.path)
        if holder is None or _stale(holder):
            return None
        return holder

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunError` naming the holder; a stale one is taken
        over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        payload = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                   "token": token, "started": _process_start(os.getpid())}
        for _ in range(5):
            if self._create(payload):
                self.token = token
                return self
            holder = _read(self.path)
            if holder is None:
                continue  # released meanwhile: try again
            if not _stale(holder):
                raise RunError(
                    f"{self.what} is being written by another process: {holder.describe()}. "
                    f"Wait for it to finish or stop it; if that process is gone, delete "
                    f"{self.path}"
                )
            self._break(holder)
        raise RunError(f"could not take the lock {self.path}; try again")

    def release(self) -> None:
        """Remove the lock if it is still this one's."""
        if self.token:
            holder = _read(self.path)
            if holder is not None and holder.token == self.token:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.token = ""

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- inside -------------------------------------------------------------------------------
    def _create(self, payload: dict[str, Any]) -> bool:
        """Make the lock file, whole, unless it exists (True when made)."""
        temp = self.path.with_name(f".{self.path.name}.{payload['token']}.tmp")
        temp.write_text(json.dumps(payload), encoding="utf-8")
        try:
            os.link(temp, self.path)  # atomic and exclusive: fails when the lock exists
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then write
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(payload))
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def _break(self, stale: LockHolder) -> None:
        """Remove the stale lock ``stale`` -- only it, not one a faster process made since."""
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - breaker.stat().st_mtime > _BREAK_STALE_SECONDS:
                    breaker.unlink()
            time.sleep(0.05)  # another process is breaking it; look again
            return
        os.close(fd)
        try:
            current = _read(self.path)
            if current is not None and current == stale:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        finally:
            with contextlib.suppress(FileNotFoundError):
                breaker.unlink()
