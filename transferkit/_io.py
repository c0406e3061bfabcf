"""Files written atomically, and paths as the kit prints them (no Keras, no NumPy).

``save_atomically`` is the kit's one atomic writer: the package (weights, models, the source
model's metadata, downloads, the command line's results), tools/ and benchmarks/ all write
through it.  A file appears whole under its name or not at all, with the mode any new file
gets (0666 less the umask: 0644 usually), whatever wrote it.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import tempfile
from pathlib import Path

__all__ = ["WEIGHTS_SUFFIX", "atomic_path", "json_safe", "os_error_reason", "save_atomically",
           "shown", "write_text"]

WEIGHTS_SUFFIX = ".weights.h5"
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def atomic_path(path):
    """A free temporary sibling of ``path`` with the same suffix, for write-then-rename.

    The name is reserved and released at once, so the writer creates the file itself: with
    the usual mode (mkstemp's own file would be 0600), and Keras, which refuses to overwrite
    some files, is content.
    """
    path = Path(path)
    suffix = WEIGHTS_SUFFIX if path.name.endswith(WEIGHTS_SUFFIX) else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def os_error_reason(exc):
    """(errno or None, one-line reason) of an OSError, h5py's multi-line ones included."""
    code = exc.errno
    if code is None:  # h5py: "... errno = 27, error message = 'File too large', ..."
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code:
        return code, os.strerror(code)
    lines = str(exc).strip().splitlines()
    return None, lines[0] if lines else type(exc).__name__


def save_atomically(write, path):
    """Call ``write(tmp_path)`` then rename onto ``path``: no half-written file, ever."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {str(path.parent)!r} ({exc.strerror}); "
                      "choose a writable location") from None
    tmp = None
    try:
        tmp = atomic_path(path)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        code, reason = os_error_reason(exc)
        fix = ("free some disk space or choose another folder" if code in _DISK_FULL else
               "choose a writable folder or another file name")
        failure = OSError(f"could not write {str(path)!r} ({reason}); nothing was saved: {fix}")
        failure.errno = code
        raise failure from None
    return path


def write_text(path, text):
    """``text`` (UTF-8, newlines as given) written atomically and synced to disk; the path."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return save_atomically(write, path)


def json_safe(value):
    """``value`` with NaN and infinities (at any depth) turned into None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def shown(path):
    """The shorter of the relative and the absolute path: exact, and stable in notebooks."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return min(relative, str(path), key=len)
