"""Writing files atomically: a crash never leaves half a file behind."""

import json
import os
import tempfile


def atomic_write(path, write_fn):
    """Calls `write_fn(tmp_path)` and renames the result onto `path`.

    A crash or error leaves no half-written `path` behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
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
