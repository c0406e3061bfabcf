"""Files written atomically, and paths as the kit prints them (no Keras, no NumPy).

``save_atomically`` is the kit's one atomic writer: the package (weights, models, the source
model's metadata, downloads, the command line's results), tools/ and benchmarks/ all write
through it.  A file appears whole under its name or not at all, with the mode any new file
gets (0666 less the umask: 0644 usually), whatever wrote it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["STALE_AGE", "WEIGHTS_SUFFIX", "atomic_path", "json_safe", "os_error_reason",
           "remove_stale_temporaries", "save_atomically", "shown", "stale_temporary",
           "write_text"]

WEIGHTS_SUFFIX = ".weights.h5"
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
# A temporary file whose writer cannot be known to be gone is stale after this many seconds
# (the kit's writers take seconds; a download rewrites its file, and so its time, as it goes).
STALE_AGE = 24 * 3600
# .<name>.<host>-<pid>-<random>.tmp<suffix>; files of older kits have no <host>-<pid>-
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-)?"
                        r"[A-Za-z0-9_]+\.tmp(?:\..*)?$")


def _host_tag():
    """Six hex digits naming this machine, so a cache shared between machines (a network
    folder) never has one machine judge another's writers by its own process table."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def atomic_path(path):
    """A free temporary sibling of ``path`` with the same suffix, for write-then-rename.

    The name is reserved and released at once, so the writer creates the file itself: with
    the usual mode (mkstemp's own file would be 0600), and Keras, which refuses to overwrite
    some files, is content.  It names the writer (machine and process id), so the file of a
    writer that was killed can be told from that of one still writing.
    """
    path = Path(path)
    suffix = WEIGHTS_SUFFIX if path.name.endswith(WEIGHTS_SUFFIX) else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}-{os.getpid()}-",
                               suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def _process_gone(pid):
    """True only when no process ``pid`` exists here (never guessed: False if unsure)."""
    if os.name != "posix" or pid == os.getpid():
        return False  # on Windows, os.kill(pid, 0) would send CTRL_C_EVENT, not ask
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists, under another user
        return False
    return False


def stale_temporary(path, now=None):
    """True when ``path`` is a temporary file of the kit's atomic writer whose writer is gone:
    its process id (named in the file) no longer exists on this machine, or, when that cannot
    be known, the file is older than ``STALE_AGE``.  A live writer's file is never stale."""
    found = _TEMPORARY.match(Path(path).name)
    if not found:
        return False
    if found["pid"] and found["host"] == _host_tag():
        return _process_gone(int(found["pid"]))
    try:
        age = (time.time() if now is None else now) - os.stat(path).st_mtime
    except OSError:
        return False
    return age > STALE_AGE


def remove_stale_temporaries(folder, depth=3, limit=10_000):
    """Delete the stale temporary files (``stale_temporary``) in ``folder`` and its subfolders
    down to ``depth``, looking at ``limit`` entries at most; returns the paths removed.
    A read-only folder is left as it is."""
    removed, seen = [], 0
    pending = [(Path(folder), 0)]
    while pending and seen < limit:
        current, level = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    if level + 1 < depth:
                        pending.append((Path(entry.path), level + 1))
                elif entry.name.startswith(".") and stale_temporary(entry.path):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:  # read-only, or removed meanwhile by another process
                continue
    return removed


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
