"""Writing files atomically: a crash never leaves half a file behind."""

import hashlib
import json
import os
import socket
import tempfile
import time

TEMPORARY_PREFIX = ".tmp-"
# A temporary file this old belongs to a writer that was killed: no write
# here takes minutes (a .keras checkpoint takes seconds).
STALE_SECONDS = 600


def _host_id():
    """A short, file-name-safe id of this machine."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _writer_prefix():
    """`.tmp-<host>-<pid>-`: names the writer, so that a killed writer's
    temporaries can be told from a live one's (`remove_stale_temporaries`)."""
    return f"{TEMPORARY_PREFIX}{_host_id()}-{os.getpid()}-"


def _writer_is_gone(name):
    """Whether `name` is a temporary of a process of this machine that no
    longer runs; False when its writer is alive, elsewhere, or unknown."""
    parts = name[len(TEMPORARY_PREFIX):].split("-")
    if len(parts) != 3 or parts[0] != _host_id() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's process, or no pid
        return False
    return False


def atomic_write(path, write_fn):
    """Calls `write_fn(tmp_path)` and renames the result onto `path`.

    A crash or error leaves no half-written `path` behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=_writer_prefix(), suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        # mkstemp makes 0600 files; give the result the usual umask mode.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, payload, **dump_options):
    """Writes `payload` as JSON (indent 2 unless given, trailing newline), atomically.

    Args:
        path: the file to write.
        payload: a JSON-serialisable object.
        **dump_options: passed to `json.dump` (e.g. `default=float`).
    """
    dump_options.setdefault("indent", 2)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, **dump_options)
            f.write("\n")

    atomic_write(path, write)


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder, older_than=STALE_SECONDS):
    """Deletes `atomic_write`'s temporary files left in `folder` by killed
    writers; returns the paths removed.

    A temporary is removed when the process that wrote it, on this machine,
    has ended, or, for writers on other machines sharing the folder (and
    files named before writers were recorded), when it is older than
    `older_than` seconds.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    cutoff = time.time() - older_than
    for entry in os.scandir(folder):
        if entry.name.startswith(TEMPORARY_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                if _writer_is_gone(entry.name) or entry.stat().st_mtime < cutoff:
                    os.remove(entry.path)
                    removed.append(entry.path)
            except OSError:  # gone already, or not ours to remove
                pass
    return removed

