"""What a job prints, and ``job.log``: every line the job printed, kept in its directory.

:func:`job_console` tees ``sys.stdout`` and ``sys.stderr`` into ``<job dir>/job.log`` (appended,
one header line per launch) for as long as the job runs. With ``quiet=True`` nothing reaches the
terminal's stdout except :func:`result_line` (errors and warnings still reach stderr), while
``job.log`` still receives everything. A write to ``job.log`` that fails (a full disk) stops the log
with one warning on stderr and never stops the job: the log is a convenience, the records are
``metrics.jsonl`` and ``summary.json``.

It starts only after a launch has been accepted, so a refused launch changes no file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from typing import TextIO

__all__ = ["LOG_FILE", "job_console", "result_line"]

LOG_FILE = "job.log"


class _Tee:
    """A text stream writing to the terminal's stream (unless muted) and to the shared log file."""

    def __init__(self, stream: TextIO, log: _Log, mute: bool):
        self._stream, self._log, self._mute = stream, log, mute

    def write(self, s: str) -> int:
        if not self._mute:
            self._stream.write(s)
        self._log.write(s)
        return len(s)

    def flush(self) -> None:
        if not self._mute:
            self._stream.flush()
        self._log.flush()

    def isatty(self) -> bool:
        return (not self._mute) and self._stream.isatty()

    @property
    def terminal(self) -> TextIO:
        """The terminal's stream (a progress bar writes there, not into job.log)."""
        return self._stream

    def __getattr__(self, name):  # encoding, fileno, errors...: the terminal stream's
        return getattr(self._stream, name)


class _Log:
    def __init__(self, path: str, stderr: TextIO):
        self.path, self._stderr = path, stderr
        self._f: TextIO | None = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by close()

    def _failed(self, e: OSError) -> None:
        self._f = None
        self._stderr.write(f"[ib-jax] warning: {self.path} is no longer written ({e.strerror}); the job goes on\n")

    def write(self, s: str) -> None:
        if self._f is not None:
            try:
                self._f.write(s)
            except OSError as e:
                self._failed(e)

    def flush(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
            except OSError as e:
                self._failed(e)

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None


_TERMINAL: list[TextIO] = []  # the terminal's stdout while a job console is active (result_line writes there)


@contextlib.contextmanager
def job_console(job_dir: str, *, quiet: bool = False, header: str = ""):
    """Tee stdout / stderr into ``<job_dir>/job.log`` for the ``with`` block; ``quiet`` mutes stdout."""
    out, err = sys.stdout, sys.stderr
    log = _Log(os.path.join(job_dir, LOG_FILE), err)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    log.write(f"\n=== launch {now} {header}\n".rstrip() + "\n")
    sys.stdout, sys.stderr = _Tee(out, log, quiet), _Tee(err, log, False)
    _TERMINAL.append(out)
    try:
        yield log
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout, sys.stderr = out, err
        _TERMINAL.pop()
        log.close()


def result_line(text: str) -> None:
    """Print ``text`` to the terminal even under ``quiet`` (and to ``job.log`` through the tee)."""
    if _TERMINAL and isinstance(sys.stdout, _Tee) and sys.stdout._mute:
        _TERMINAL[-1].write(text + "\n")
        _TERMINAL[-1].flush()
        sys.stdout._log.write(text + "\n")
    else:
        print(text)
