"""Stopping a run cleanly when it is asked to: SIGTERM, SIGINT (Ctrl-C), a launcher's death.

A signal arrives at any point of a run — in the middle of an update, an evaluation or a
file write. Acting there could leave a half-updated agent in the checkpoint, so the
handler only records the request (:class:`StopRequest`); the training loop acts on it at
the next update boundary (:meth:`pglab.loop.TrainingLoop.__call__`): it logs what it has,
saves a checkpoint and raises :class:`Interrupted`. The run then writes ``summary.json``
as ``interrupted``, finishes its W&B run as preempted, and the process exits with
``128 + signal`` (130 for SIGINT, 143 for SIGTERM); rerunning the same command resumes.
A second SIGINT or SIGTERM stops at once (the last checkpoint is kept).

Under a SLURM launcher (submitit), the requeue signal (SIGUSR2, sent before the time
limit) is taken the same way, and then handed to submitit's own handler, which requeues
the job; the requeued job resumes from the checkpoint written here.

A joblib sweep's jobs run in worker processes. If the launcher dies (``kill``, or
``kill -9``), nothing would tell them; :func:`stop_when_parent_dies` watches the parent and
stops the job the same way, so no worker keeps writing into the sweep folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

log = logging.getLogger("pglab")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REQUEUE_SIGNAL = signal.SIGUSR2  # submitit's default (SlurmJobEnvironment.USR_SIG)
PARENT_POLL_S = 0.5  # how often a sweep worker checks that its launcher is alive


class Interrupted(BaseException):
    """The run was stopped by a signal (a BaseException, like KeyboardInterrupt: library
    code that catches ``Exception`` does not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal_name(signum)}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@dataclass
class StopRequest:
    """Set by the signal handler, read by the training loop at each update.

    ``signum``: the signal that asked the run to stop (None: keep going). ``requeue``: the
    handler a SLURM launcher had installed for ``signum``, to call once the run has stopped.
    """

    signum: int | None = None
    requeue: Callable[[int, FrameType | None], Any] | None = None
    finishing: bool = False  # the run is writing its end (summary, W&B): a second signal waits for it

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was requested (the caller has saved what it must)."""
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Handle SIGTERM, SIGINT (and a launcher's requeue signal) while the block runs.

    Outside the main thread (where Python cannot install handlers) the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (*STOP_SIGNALS, REQUEUE_SIGNAL)}
    launcher_requeue = previous[REQUEUE_SIGNAL]

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None and signum in STOP_SIGNALS:
            if not request.finishing:
                raise Interrupted(signum)  # asked twice: stop now, keep the last checkpoint
            return
        request.signum = signum
        if signum == REQUEUE_SIGNAL and callable(launcher_requeue):
            request.requeue = launcher_requeue
        log.warning(
            "pglab: %s received: stopping at the next update with a checkpoint (send it again to stop at once)",
            signal_name(signum),
        )

    for s in STOP_SIGNALS:
        signal.signal(s, handle)
    if callable(launcher_requeue):  # only under a launcher that requeues (submitit)
        signal.signal(REQUEUE_SIGNAL, handle)
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def stop_when_parent_dies(request: StopRequest) -> Iterator[None]:
    """While the block runs, send this process SIGTERM if its parent process goes away
    (unless a stop was already requested: a Ctrl-C reaches the workers and the launcher
    at once, and the workers' stop must not turn into a second, immediate one).

    A process whose parent dies is adopted by another (init, or a subreaper), so a change
    of ``os.getppid()`` is the parent's death, whatever killed it.
    """
    parent = os.getppid()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(PARENT_POLL_S):
            if os.getppid() != parent:
                if request.signum is not None:
                    return
                log.warning("pglab: the sweep's launcher (pid %d) is gone; stopping this job", parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=watch, name="pglab-parent-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@contextlib.contextmanager
def launcher_stops_on_signals() -> Iterator[None]:
    """The launcher process (``run.py``) on SIGTERM or Ctrl-C outside a job: one line, exit
    ``128 + signal`` at once, no traceback. A job installs its own handlers
    (:func:`stop_on_signals`) while it runs; a sweep's worker processes see the launcher
    go and stop their jobs with checkpoints (:func:`stop_when_parent_dies`)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        # exit here, not by raising: an exception in a joblib launcher makes joblib SIGKILL
        # the workers, which then cannot write their stop checkpoints
        print(f"pglab: interrupted by {signal_name(signum)}; rerun the same command to resume", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(128 + signum)

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
