"""One job per directory: an OS lock on ``<job_dir>/job.lock``, gone when its process dies.

Two processes writing one job directory (a relaunch while the first launch is
still running, a requeued job started twice by the scheduler) would interleave
metrics rows and overwrite each other's checkpoints. :class:`JobLock` takes an
exclusive ``flock(2)`` on an open file descriptor of ``<job_dir>/job.lock``:

* the kernel drops the lock when the descriptor closes, and a process's
  descriptors close when it exits in any way, SIGKILL included, so there is
  never a stale lock to clean up;
* acquisition does not wait: a second acquirer (another process, or another
  ``JobLock`` in the same process) raises :class:`JobLocked` at once, naming
  the holder's pid and host, which the holder writes into the lock file after
  acquiring;
* the lock file is never deleted (unlinking it would let two processes lock two
  different files of the same name); on release its content is emptied, or, for a
  launch refused before it started anything (``release(restore=True)``), put back
  as it was (a refused relaunch changes no file of the job directory).

Limits: ``flock`` locks the open file description, so a child made by a bare
``os.fork()`` that keeps the descriptor also keeps the lock (the descriptor is
non-inheritable, so ``subprocess`` children do not). On NFS, Linux emulates
``flock`` with POSIX byte-range locks, which work across clients; Lustre needs
its ``flock`` mount option. Only the Python standard library is used here.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket

__all__ = ["JobLock", "JobLocked", "LOCK_FILE"]

LOCK_FILE = "job.lock"


class JobLocked(RuntimeError):
    """The job directory is locked by another live job; ``holder``: what the lock file says about it."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


class JobLock:
    """Exclusive, non-blocking lock of a job directory; a context manager.

    ``with JobLock(job_dir): ...`` or ``lock = JobLock(job_dir).acquire()`` ...
    ``lock.release()``. Creates ``job_dir`` if needed. Dropping the object
    without :meth:`release` keeps the lock until the process exits (on purpose:
    a garbage-collected reference must not free a running job's directory).
    """

    def __init__(self, job_dir: str, filename: str = LOCK_FILE):
        self.job_dir = os.fspath(job_dir)
        self.path = os.path.join(self.job_dir, filename)
        self._fd: int | None = None
        self._previous = b""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            return json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}  # the holder has locked but not yet written, or wrote something else

    def acquire(self) -> JobLock:
        """Take the lock or raise :class:`JobLocked` at once; returns ``self``."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this JobLock")
        os.makedirs(self.job_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # non-inheritable (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            h = self._holder()
            who = (
                f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started {h.get('started', '?')}"
                if h
                else "a process that has not yet written its pid"
            )
            raise JobLocked(
                f"{self.job_dir} is in use by another job ({who}); one job per directory: wait for it "
                f"to end or stop it, or give this launch another output directory",
                h,
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        try:
            self._previous = os.pread(fd, max(os.fstat(fd).st_size, 1), 0)  # a dead holder's note, or b""
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError:
            os.close(fd)  # releases the lock: a lock nobody can attribute is worse than a failed launch
            raise
        self._fd = fd
        self.info = info
        return self

    def release(self, restore: bool = False) -> None:
        """Empty the lock file and drop the lock (idempotent).

        ``restore=True``: put back the content the file had before :meth:`acquire` instead
        (a launch refused before it did anything leaves the job directory byte-identical).
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # while still locked: nobody reads a stale pid afterwards
            if restore and self._previous:
                os.pwrite(fd, self._previous, 0)
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
