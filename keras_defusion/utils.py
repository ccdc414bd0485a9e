"""Small shared helpers, importable before TensorFlow."""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr():
    """Captures what native code writes to file descriptor 2 (`.text`)."""

    class Captured:
        text = ""

    captured = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
