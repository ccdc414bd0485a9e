"""What made each output of a `detect` folder, so that outputs never mix.

Every folder `keras-defusion detect --out` writes holds `MANIFEST_FILE`: for
each output name, the photo's path and SHA-256, the model and the settings
that made it. A re-run keeps a photo's outputs only when its record matches
(the same photo bytes, model and settings); otherwise it makes them again.
The file also marks the folder as outputs, so a later `detect -r` over a
parent folder does not read maps as photos.
"""

import hashlib
import json
import os
import pathlib

from keras_defusion.io.files import write_json

MANIFEST_FILE = ".keras-defusion-detect.json"
FORMAT_VERSION = 1


def is_output_folder(folder):
    """Whether `folder` was written by `keras-defusion detect` (holds the manifest)."""
    return (pathlib.Path(folder) / MANIFEST_FILE).is_file()


def file_sha256(path, chunk_bytes=1 << 20):
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(source):
    """A model's identity for the manifest: its path or name, and for a file
    or folder its size and modification time (so a retrained file differs)."""
    path = pathlib.Path(str(source))
    if not path.exists():
        return {"source": str(source)}
    stat = (path / "saved_model.pb").stat() if path.is_dir() and (
        path / "saved_model.pb").exists() else path.stat()
    return {"source": str(path.resolve()), "bytes": stat.st_size,
            "modified_ns": stat.st_mtime_ns}


class OutputManifest:
    """The records of one output folder.

    Args:
        out_dir: the output folder (need not exist yet).
    """

    def __init__(self, out_dir):
        self.path = pathlib.Path(out_dir) / MANIFEST_FILE
        self.records = {}
        if self.path.is_file():
            try:
                document = json.loads(self.path.read_text())
                self.records = dict(document.get("outputs", {}))
            except (ValueError, OSError, AttributeError):
                # Unreadable: no output is trusted, every photo is made again.
                self.records = {}

    def matches(self, name, record):
        """Whether the outputs named `name` were made as `record` says (every
        key of `record` equal; other keys, such as the photo's path, are notes)."""
        old = self.records.get(name)
        return old is not None and all(old.get(key) == value for key, value in record.items())

    def describe_mismatch(self, name, record):
        """Why the existing outputs of `name` do not fit `record` (for messages)."""
        old = self.records.get(name)
        if old is None:
            return "nothing records what made them"
        changed = sorted(key for key, value in record.items() if old.get(key) != value)
        return "they were made with a different " + ", ".join(changed)

    def record(self, name, record):
        self.records[name] = record

    def save(self):
        """Writes the manifest atomically (creating the folder)."""
        os.makedirs(self.path.parent, exist_ok=True)
        write_json(self.path, {"tool": "keras-defusion detect", "format": FORMAT_VERSION,
                               "outputs": self.records})
