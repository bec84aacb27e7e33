"""How a run that does not succeed ends: one line on stderr, and an exit code that says why.

=====  ===============================================================================
code   meaning
=====  ===============================================================================
0      the run completed (or had completed earlier with this config and was skipped)
1      the run failed: an error while training (traceback in ``summary.json`` and
       ``run.log``), or non-finite weights
2      a config error, found before any work started
3      the output folder cannot be written: not a folder, read-only, or the disk is
       (or became) full; what was written before stays intact
4      the run folder is in use by another run that is still going
130    interrupted by SIGINT (Ctrl-C); 143: by SIGTERM. A checkpoint was kept; the
       same command resumes
=====  ===============================================================================

The output folder is checked before Hydra writes into it (:func:`check_output_folder`,
from :mod:`pglab.cli`); a disk that fills during a run is recognised from the
``OSError`` it raises (:func:`output_error`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_OUTPUT = 3
EXIT_BUSY = 4

MIN_FREE_BYTES = 64 * 2**20  # a run's files (metrics, checkpoints, W&B) need less than this to start

# errno values that mean "this folder cannot be written", with what to do about each
_OUTPUT_ERRNOS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write",
    errno.EPERM: "permission denied; choose a folder you can write",
    errno.ENOTDIR: "a path component is a file, not a folder; choose another folder",
    errno.EEXIST: "a file is in the way; choose another folder",
}


class OutputError(Exception):
    """The run's output folder cannot be written (one line: where, why, what to do)."""


def output_error(err: BaseException, folder: Path) -> OutputError | None:
    """The one-line :class:`OutputError` for an OSError that means ``folder`` cannot be
    written (a full disk, a read-only file system, ...); None for any other error."""
    if not isinstance(err, OSError) or err.errno not in _OUTPUT_ERRNOS:
        return None
    where = f" writing {err.filename}" if err.filename else f" writing in {folder}"
    return OutputError(f"{os.strerror(err.errno)}{where}: {_OUTPUT_ERRNOS[err.errno]}")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: Path, label: str) -> None:
    """Raise :class:`OutputError` unless a run can write into ``path`` (made if missing).

    ``label``: the config key that set the folder (``hydra.run.dir``). Checks that the path
    (or its nearest existing ancestor) is a folder, that a file can be created there
    (read-only mounts; permissions, which root bypasses), and that ``MIN_FREE_BYTES`` are free.
    """
    path = Path(path).absolute()
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"{label}={path}: {base} is a file, not a folder; choose another folder")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".pglab-write-check-"):
            pass
    except OSError as err:
        reason = _OUTPUT_ERRNOS.get(err.errno or 0, "choose another folder")
        raise OutputError(f"{label}={path}: cannot write in {base} ({os.strerror(err.errno or 0)}); {reason}") from None
    with contextlib.suppress(OSError):
        stat = os.statvfs(base)
        free = stat.f_bavail * stat.f_frsize
        if free < MIN_FREE_BYTES:
            raise OutputError(
                f"{label}={path}: only {free / 2**20:.1f} MiB free on its disk (a run needs "
                f"{MIN_FREE_BYTES // 2**20} MiB); free some space or choose another folder"
            )
