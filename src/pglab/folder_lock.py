"""One live run per run folder: a lock held by the running process.

Two runs started into one folder (the same ``hydra.run.dir`` twice, or two sweeps into
one sweep folder) would interleave their metrics and overwrite each other's summary and
checkpoint. A run therefore holds an exclusive ``flock`` on ``<run dir>/.pglab.lock``
while it runs; a second start into the folder is refused with one line naming the
holder (written into the file: pid, host, start time).

The kernel releases a ``flock`` when its process ends, however it ends (``kill -9``
included), so a lock left by a dead run is never mistaken for a live one: the file stays,
but nothing holds it. On Linux, ``flock`` works across the nodes of an NFS mount too
(the kernel maps it onto NFS byte-range locks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".pglab.lock"

log = logging.getLogger("pglab")


class FolderBusy(Exception):
    """Another live process holds the run folder's lock."""


def _holder(fd: int) -> str:
    """The holder as it described itself in the lock file (pid, host, start time)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["since"])))
        return f"pid {data['pid']} on {data['host']}, since {since}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"


def _busy(path: Path, holder: str) -> FolderBusy:
    return FolderBusy(
        f"{path} is in use by a run that is still going ({holder}); wait for it to end, "
        "or choose another folder (hydra.run.dir / hydra.sweep.dir)"
    )


@contextlib.contextmanager
def hold(path: Path) -> Iterator[None]:
    """Hold the folder's lock while the block runs; :class:`FolderBusy` if a live run holds it."""
    fd = os.open(Path(path) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(Path(path), _holder(fd)) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise
            log.warning("%s: this file system has no locks (%s); the run goes on without one", path, err.strerror)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_free(path: Path) -> None:
    """Raise :class:`FolderBusy` if a live run holds ``path``'s lock (a check before a start;
    :func:`hold` is what excludes)."""
    lock = Path(path) / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return  # no lock file (or no folder): nothing holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(Path(path), _holder(fd)) from None
    finally:
        os.close(fd)
