"""Preemption: note the scheduler's signal, stop at the next chunk boundary, save, exit for requeue.

Schedulers warn a job before killing it:

* SLURM sends SIGTERM when a job is preempted or cancelled (then SIGKILL after
  ``KillWait``/``GraceTime``) and, with ``--signal=[B:]SIG@secs``, a chosen
  signal ``secs`` before the time limit;
* submitit (and hydra's submitit launcher) asks SLURM for SIGUSR2 90 s before
  the limit (``SUBMITIT_PREEMPT_SIGNAL``, default ``USR2``); its own SIGUSR2
  handler calls the task's ``checkpoint()`` (the hydra launcher's resubmits the
  same job), runs ``scontrol requeue`` and exits with status 255; it ignores
  SIGTERM (logs it);
* SIGUSR1 is the other common choice (``--signal=USR1@120``; PyTorch Lightning).

:class:`PreemptionGuard` installs handlers for these signals that only set a
flag (nothing else is safe inside a handler: the main thread may be anywhere,
mid-write included). The training loop checks :attr:`PreemptionGuard.requested`
between chunks, saves a checkpoint and its records, then calls
:func:`exit_for_requeue`:

* if the handler that was installed before the guard for the received signal is
  a Python function (submitit's requeue handler under the submitit launcher), it
  is called with that signal, after the save: submitit then requeues the job
  itself and exits;
* otherwise the process exits with :data:`REQUEUE_EXIT_CODE` = 143 = 128 +
  SIGTERM, the status a shell reports for a process ended by SIGTERM. Schedulers
  and wrappers already treat that as "terminated, not failed" (Kubernetes and
  systemd report it as SIGTERM termination; a batch script can
  ``[ $? -eq 143 ] && scontrol requeue $SLURM_JOB_ID``). 124 is GNU
  ``timeout``'s status for a command that ran out of time, which would misstate a
  clean, checkpointed stop; 255 is submitit's own (``sys.exit(-1)``).

Relaunching the same command then resumes from the checkpoint. Only the Python
standard library is used here.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from typing import NoReturn

__all__ = ["PreemptionGuard", "REQUEUE_EXIT_CODE", "PREEMPTION_SIGNALS", "exit_for_requeue"]

REQUEUE_EXIT_CODE = 128 + signal.SIGTERM  # 143
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class PreemptionGuard:
    """Context manager: while inside, SIGTERM/SIGUSR1/SIGUSR2 only set :attr:`requested`.

    The previous handlers are restored on exit (and by :meth:`exit_for_requeue`).
    Signal handlers can only be set from the main thread; elsewhere the guard
    warns and does nothing (the signals keep their previous behaviour).
    """

    def __init__(self, signals=PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self._old: dict[int, object] = {}
        self._received: list[tuple[int, float]] = []
        self.active = False

    def _handler(self, signum, frame) -> None:
        self._received.append((signum, time.time()))  # list.append is atomic; nothing else here

    @property
    def requested(self) -> bool:
        """True once any guarded signal has arrived."""
        return bool(self._received)

    @property
    def signal(self) -> int | None:
        """The first guarded signal received (``signal.Signals``), or None."""
        return signal.Signals(self._received[0][0]) if self._received else None

    @property
    def received_at(self) -> float | None:
        """Unix time of the first guarded signal, or None."""
        return self._received[0][1] if self._received else None

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            warnings.warn(
                "PreemptionGuard: not in the main thread, where Python runs signal handlers; preemption signals are not caught",
                stacklevel=2,
            )
            return self
        for s in self.signals:
            self._old[s] = signal.signal(s, self._handler)
        self.active = True
        return self

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        old, self._old = self._old, {}
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self.active = False

    def __exit__(self, *exc) -> None:
        self.restore()

    def exit_for_requeue(self, message: str | None = None, code: int = REQUEUE_EXIT_CODE) -> NoReturn:
        """After the checkpoint is saved: hand over to the previous handler, or exit with ``code``.

        Restores the previous handlers; if the one for the received signal was a
        Python function (e.g. submitit's requeue handler), calls it with that
        signal (it requeues and exits); if it returns, exits with ``code``.
        """
        sig = self.signal
        prev = self._old.get(sig) if sig is not None else None
        self.restore()
        if message:
            print(message, file=sys.stderr, flush=True)
        if callable(prev) and prev not in (signal.default_int_handler,):
            prev(int(sig), None)
        sys.exit(code)


def exit_for_requeue(guard: PreemptionGuard | None = None, message: str | None = None, code: int = REQUEUE_EXIT_CODE) -> NoReturn:
    """Exit so that the scheduler requeues the job: ``guard.exit_for_requeue`` or ``sys.exit(code)``."""
    if guard is not None:
        guard.exit_for_requeue(message, code)
    if message:
        print(message, file=sys.stderr, flush=True)
    sys.exit(code)
