"""Detect blur in photos on disk and write their maps, overlays, panels and masks.

The library side of `keras-defusion detect` (see `keras_defusion.cli.detect`
for the output folder's layout): photos are decoded and resized in threads
ahead of the network and their outputs written behind it; every output's
provenance is recorded (`keras_defusion.io.provenance`).
"""

import collections
import concurrent.futures
import dataclasses
import os
import pathlib
import sys
import time

import numpy as np

from keras_defusion.io import files
from keras_defusion.io import images as image_io
from keras_defusion.io import provenance
from keras_defusion.io.photo_files import PICTURE_FORMATS
from keras_defusion.io.photo_files import collect_photos
from keras_defusion.io.photo_files import output_names
from keras_defusion.io.photo_files import output_paths
from keras_defusion.io.photo_files import write_outputs

DEFAULT_BATCH_SIZE = 4
# Threads that decode, resize and write while the network runs.
WORKER_THREADS = min(4, os.cpu_count() or 1)
PREFETCH_BATCHES = 2
MAX_PENDING_WRITES = 16


@dataclasses.dataclass
class DetectSummary:
    """What `detect_paths` did.

    Attributes:
        out_dir: the output folder.
        written: (photo path, output name) of each photo with outputs written.
        skipped: photos whose outputs all existed, made from the same photo,
            model and settings (not run; see `overwrite`).
        remade: (photo, reason) of photos whose existing outputs were made
            from other bytes, another model or other settings, and were
            made again.
        failures: (path or pattern, message) of each input that failed.
        ignored: files in the given folders without an image extension.
        seconds: wall time of the detection and writing.
        kinds: the output subfolders written ("maps", "overlays", ...).
        interrupted: the run was stopped (Ctrl-C) before every photo was
            done; what was written is complete and recorded.
    """

    out_dir: pathlib.Path
    written: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    remade: list = dataclasses.field(default_factory=list)
    failures: list = dataclasses.field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0
    kinds: tuple = ("maps", "overlays", "panels")
    interrupted: bool = False

    @property
    def ok(self):
        return not self.failures

    @property
    def seconds_per_photo(self):
        return self.seconds / len(self.written) if self.written else 0.0

    def format(self):
        """The end-of-run report: counts, time per photo, failures."""
        count = len(self.written) + len(self.skipped) + len(self.failures)
        parts = [f"{len(self.written)} photo(s) done"]
        if self.remade:
            parts.append(f"{len(self.remade)} of them made again (their old outputs came "
                         "from another photo, model or setting)")
        if self.skipped:
            parts.append(
                f"{len(self.skipped)} skipped (outputs exist; --overwrite replaces them)"
            )
        parts.append(f"{len(self.failures)} failed")
        line = f"{count} input(s): {', '.join(parts)}"
        if self.written:
            line += f"; {self.seconds_per_photo:.2f} s per photo"
        lines = [line]
        if self.interrupted:
            lines.append("interrupted: the photos not listed as done were not run; "
                         "run the same command again to finish (done ones are skipped)")
        if self.ignored:
            lines.append(f"ignored {self.ignored} file(s) without an image extension")
        if self.written or self.skipped:
            lines.append(f"outputs in {self.out_dir}/ ({', '.join(self.kinds)})")
        if self.failures:
            lines.append("failed:")
            lines += [f"  {message}" for _, message in self.failures]
        return "\n".join(lines)



def detect_paths(
    paths,
    out_dir,
    detector,
    threshold=None,
    overwrite=False,
    recursive=False,
    batch_size=DEFAULT_BATCH_SIZE,
    picture_format="jpg",
    progress=None,
    report=None,
):
    """Detects blur in photos and writes maps, overlays, panels and masks.

    Bad inputs (missing paths, non-images, truncated or empty files,
    decompression bombs) are reported one by one and the rest processed.

    Args:
        paths: files, folders and glob patterns (see `collect_photos`).
        out_dir: the output folder (see the module docstring for its layout).
        detector: a `keras_defusion.inference.detector.Detector`.
        threshold: also write binary masks at this threshold (0..1); the
            overlays then tint only pixels at or above it.
        overwrite: replace existing outputs; otherwise they are kept, and a
            photo whose outputs all exist, made from the same photo bytes,
            model and settings, is skipped (outputs made otherwise are made
            again).
        recursive: search folders' subfolders too.
        batch_size: photos per network call.
        picture_format: `"jpg"` or `"png"` for overlays and panels.
        progress: show a progress bar; None shows one on a terminal only.
        report: callable(message) for per-file notes (default: stderr,
            above the progress bar).

    Returns:
        A `DetectSummary`.
    """
    from tqdm import tqdm

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if picture_format not in PICTURE_FORMATS:
        raise ValueError(f"picture_format must be one of {sorted(PICTURE_FORMATS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out_dir = pathlib.Path(out_dir)
    if report is None:
        def report(message):
            tqdm.write(message, file=sys.stderr)

    start = time.perf_counter()
    photos, failures, ignored = collect_photos(paths, recursive, exclude_dir=out_dir)
    summary = DetectSummary(
        out_dir=out_dir,
        failures=list(failures),
        ignored=ignored,
        kinds=tuple(output_paths(out_dir, "_", threshold, picture_format)),
    )
    for _, message in failures:
        report(f"error: {message}")
    for kind in ("", *summary.kinds):  # what a killed run left half-written
        files.remove_stale_temporaries(out_dir / kind)
    manifest = provenance.OutputManifest(out_dir)
    settings = {"model": provenance.model_fingerprint(detector.source), "kind": detector.kind,
                "inference_size": detector.inference_size, "input_size": detector.input_size,
                "threshold": threshold}
    with concurrent.futures.ThreadPoolExecutor(WORKER_THREADS) as pool:
        checksums = list(pool.map(_checksum, photos))
    todo = []
    for photo, name, checksum in zip(photos, output_names(photos), checksums):
        targets = output_paths(out_dir, name, threshold, picture_format)
        record = {"sha256": checksum, **settings}
        existing = [path for path in targets.values() if path.exists()]
        remake = bool(existing) and not overwrite and not manifest.matches(name, record)
        if existing and not overwrite and not remake and len(existing) == len(targets):
            summary.skipped.append(photo)
            report(f"skipped {photo}: its outputs exist in {out_dir} (--overwrite replaces them)")
            continue
        if remake:
            reason = manifest.describe_mismatch(name, record)
            summary.remade.append((photo, reason))
            report(f"making {photo}'s outputs again: those in {out_dir} named {name} exist, "
                   f"but {reason}")
        todo.append((photo, name, targets, record, overwrite or remake))
    if todo:
        manifest.save()  # marks the folder as outputs before any is written

    def fail(photo, message):
        summary.failures.append((str(photo), message))
        report(f"error: {message}")

    disable = None if progress is None else not progress
    with tqdm(total=len(todo), unit="photo", disable=disable, file=sys.stderr) as bar, \
            concurrent.futures.ThreadPoolExecutor(WORKER_THREADS) as pool:

        def load(photo):
            rgb = image_io.load_rgb(photo)
            return rgb, *detector.prepare(rgb)

        def write(item, rgb, small, size):
            _, _, targets, _, replace = item
            return write_outputs(targets, rgb, detector.restore(small, size), threshold, replace)

        def finish(item, future):
            photo, name, _, record, _ = item
            try:
                kept = future.result()
            except OSError as e:
                fail(photo, f"{photo}: cannot write its outputs ({e})")
            else:
                summary.written.append((photo, name))
                manifest.record(name, {**record, "photo": str(photo)})
                if kept:
                    report(f"kept existing {', '.join(str(p) for p in kept)} "
                           f"(--overwrite replaces them)")
            bar.update(1)

        # Photos are decoded and resized PREFETCH_BATCHES batches ahead of the
        # network, and their outputs written behind it, in the pool's threads.
        batches = iter([todo[i:i + batch_size] for i in range(0, len(todo), batch_size)])
        loads, writes = collections.deque(), collections.deque()

        def queue_next_batch():
            batch = next(batches, None)
            if batch is not None:
                loads.append([(item, pool.submit(load, item[0])) for item in batch])

        try:
            for _ in range(PREFETCH_BATCHES):
                queue_next_batch()
            while loads:
                loaded = []
                for item, future in loads.popleft():
                    try:
                        loaded.append((item, *future.result()))
                    except image_io.ImageReadError as e:
                        fail(item[0], str(e))
                        bar.update(1)
                queue_next_batch()
                for (item, rgb, _, size), small in _run_network(detector, loaded, fail):
                    writes.append((item, pool.submit(write, item, rgb, small, size)))
                while writes and (writes[0][1].done() or len(writes) > MAX_PENDING_WRITES):
                    finish(*writes.popleft())
        except KeyboardInterrupt:
            # Ctrl-C: start nothing new, finish the writes under way, report.
            summary.interrupted = True
            for batch in loads:
                for _, future in batch:
                    future.cancel()
        while writes:
            finish(*writes.popleft())
    if summary.written:
        manifest.save()
    summary.seconds = time.perf_counter() - start
    return summary


def _checksum(photo):
    """A photo's SHA-256, or None when it cannot be read (reported when loaded)."""
    try:
        return provenance.file_sha256(photo)
    except OSError:
        return None


def _run_network(detector, loaded, fail):
    """Yields (loaded item, map at S x S); a failing batch runs one by one."""
    if not loaded:
        return
    try:
        maps = detector.run_prepared(np.stack([entry[2] for entry in loaded]))
    except Exception:  # any runtime's error: find the photo that causes it
        maps = None
    for index, entry in enumerate(loaded):
        if maps is not None:
            yield entry, maps[index]
            continue
        photo = entry[0][0]
        try:
            small = detector.run_prepared(entry[2][None])[0]
        except Exception as e:  # reported per photo; the others go on
            fail(photo, f"{photo}: detection failed ({type(e).__name__}: {e})")
            continue
        yield entry, small

