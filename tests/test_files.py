"""Atomic writes and the clean-up of what killed writers leave behind."""

import os
import subprocess
import sys
import time

import pytest

from keras_defusion.io import files


def _ended_pid():
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_atomic_write_names_its_writer_and_leaves_nothing_on_error(tmp_path):
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(tmp_path / "a.json", write)
    assert seen[0].startswith(files._writer_prefix()) and str(os.getpid()) in seen[0]
    assert list(tmp_path.iterdir()) == []
    files.write_json(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_killed_writers_temporaries_go_at_once_a_live_ones_stay(tmp_path):
    host = files._host_id()
    ended = tmp_path / f".tmp-{host}-{_ended_pid()}-abc12345.keras"
    live = tmp_path / f".tmp-{host}-{os.getpid()}-def12345.keras"
    elsewhere = tmp_path / ".tmp-0000zzzz-1-ghi12345.keras"  # another machine
    unnamed_fresh = tmp_path / ".tmp-jkl12345.keras"  # before writers were named
    unnamed_old = tmp_path / ".tmp-mno12345.keras"
    other = tmp_path / "last.keras"
    for path in (ended, live, elsewhere, unnamed_fresh, unnamed_old, other):
        path.write_bytes(b"x")
    old = time.time() - files.STALE_SECONDS - 60
    os.utime(unnamed_old, (old, old))

    removed = files.remove_stale_temporaries(tmp_path)

    assert sorted(removed) == sorted([str(ended), str(unnamed_old)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, elsewhere, unnamed_fresh, other))
    # Past the age limit, another machine's writer counts as killed too.
    os.utime(elsewhere, (old, old))
    assert files.remove_stale_temporaries(tmp_path) == [str(elsewhere)]
