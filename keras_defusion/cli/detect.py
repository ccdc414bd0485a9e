"""`keras-defusion detect`: blur maps and pictures for photos on disk.

For each photo, under the output folder:

- `maps/<name>.png`: the blur map, 8-bit grey (255 = blurred), the photo's
  size (EXIF orientation applied): ready for `keras-defusion evaluate --pred`;
- `overlays/<name>.jpg`: the photo with blurred regions tinted red;
- `panels/<name>.jpg`: photo | colour-mapped map | overlay, side by side;
- `masks/<name>.png`: with `--threshold T`, 255 where the map is >= T.

`<name>` is the photo's file stem. Photos that share a stem (case-insensitive,
e.g. `a/img.jpg` and `b/img.png`) all get `<stem>__<parent folder>`; a name
still taken gets `__2`, `__3`, ... in input order.

The folder also holds `.keras-defusion-detect.json`
(`keras_defusion.io.provenance`): what made each output (the photo's
SHA-256, the model, the sizes, the threshold). A re-run keeps outputs only
when they were made from the same photo bytes, model and settings, and
makes them again otherwise; and searching folders skips folders that hold
this file, so earlier outputs are never read as photos.

Library use:
    detector = load_detector("model.keras")
    summary = detect_paths(["photos/"], "out", detector, threshold=0.5)
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import glob
import os
import pathlib
import sys
import time

import numpy as np
from PIL import Image

from keras_defusion.errors import UsageError
from keras_defusion.inference.contract import check_inference_size
from keras_defusion.io import files
from keras_defusion.io import images as image_io
from keras_defusion.io import provenance
from keras_defusion.io import visualize

PICTURE_FORMATS = {"jpg": "JPEG", "png": "PNG"}
JPEG_QUALITY = 90
DEFAULT_BATCH_SIZE = 4
# Threads that decode, resize and write while the network runs.
WORKER_THREADS = min(4, os.cpu_count() or 1)
PREFETCH_BATCHES = 2
MAX_PENDING_WRITES = 16
# The shell's status for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


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


def collect_photos(paths, recursive=False, exclude_dir=None):
    """Expands files, folders and glob patterns into a list of photos.

    Args:
        paths: file paths, folders (their image files, sorted) and glob
            patterns (`*`, `?`, `[...]`, `**` with `recursive`).
        recursive: search folders' subfolders too.
        exclude_dir: files under this folder are left out (the output
            folder, so a re-run does not detect blur in its own maps).
            Folders that an earlier `detect` wrote (`provenance.MANIFEST_FILE`)
            are left out of folder searches as well.

    Returns:
        (photos, failures, ignored): photo paths in input order without
        duplicates; (input, message) for inputs that match nothing; the count
        of non-image files in the folders and glob matches.
    """
    photos, failures, seen = [], [], set()
    ignored = 0
    exclude = pathlib.Path(exclude_dir).resolve() if exclude_dir else None

    def add(path):
        resolved = path.resolve()
        if exclude is not None and exclude in resolved.parents:
            return
        if resolved not in seen:
            seen.add(resolved)
            photos.append(path)

    outputs = {}

    def in_outputs(entry, top):
        """Whether a file lies in a folder an earlier `detect` wrote (under `top`)."""
        for parent in entry.relative_to(top).parents:
            folder = top / parent
            if folder not in outputs:
                outputs[folder] = provenance.is_output_folder(folder)
            if outputs[folder]:
                return True
        return False

    def add_folder(folder):
        nonlocal ignored
        if provenance.is_output_folder(folder):
            failures.append((str(folder), f"{folder}: holds the outputs of an earlier "
                             "`keras-defusion detect`, not photos (name its files to run "
                             "on them anyway)"))
            return
        photos_here = [entry for entry in image_io.list_images(folder, recursive)
                       if not in_outputs(entry, folder)]
        for entry in photos_here:
            add(entry)
        found = bool(photos_here)
        entries = folder.rglob("*") if recursive else folder.iterdir()
        ignored += sum(
            1 for entry in entries
            if entry.is_file() and not image_io.is_hidden(entry)
            and not image_io.is_image_file(entry) and not in_outputs(entry, folder)
        )
        if not found:
            hint = "" if recursive else " (--recursive searches subfolders)"
            failures.append((str(folder), f"{folder}: no photos in folder{hint}"))

    for raw in paths:
        path = pathlib.Path(raw).expanduser()
        if path.is_file():
            add(path)  # Named explicitly: read it whatever its extension.
        elif path.is_dir():
            add_folder(path)
        elif glob.has_magic(str(raw)):
            matches = sorted(glob.glob(os.path.expanduser(str(raw)), recursive=True))
            if not matches:
                failures.append((str(raw), f"{raw}: no file matches the pattern"))
            for match in map(pathlib.Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif image_io.is_image_file(match):
                    add(match)
                else:
                    ignored += 1
        else:
            failures.append((str(raw), f"{raw}: no such file or folder"))
    return photos, failures, ignored


def output_names(photos):
    """Output file names (no extension) for photos, unique case-insensitively.

    A photo's name is its stem. Photos sharing a stem all get
    `<stem>__<parent folder>`; a name still taken gets `__2`, `__3`, ...
    in input order.
    """
    stem_counts = {}
    for photo in photos:
        key = photo.stem.casefold()
        stem_counts[key] = stem_counts.get(key, 0) + 1
    names, taken = [], set()
    for photo in photos:
        name = photo.stem
        if stem_counts[name.casefold()] > 1:
            name = f"{name}__{photo.resolve().parent.name or 'root'}"
        candidate, number = name, 2
        while candidate.casefold() in taken:
            candidate, number = f"{name}__{number}", number + 1
        taken.add(candidate.casefold())
        names.append(candidate)
    return names


def output_paths(out_dir, name, threshold=None, picture_format="jpg"):
    """dict kind -> the file `detect` writes for one photo."""
    out_dir = pathlib.Path(out_dir)
    paths = {
        "maps": out_dir / "maps" / f"{name}.png",
        "overlays": out_dir / "overlays" / f"{name}.{picture_format}",
        "panels": out_dir / "panels" / f"{name}.{picture_format}",
    }
    if threshold is not None:
        paths["masks"] = out_dir / "masks" / f"{name}.png"
    return paths


def save_image(path, array):
    """Writes uint8 grey or RGB as PNG or JPEG (by extension), atomically."""
    path = pathlib.Path(path)
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    file_format = PICTURE_FORMATS[path.suffix.lstrip(".").lower()]
    # Fast PNG compression: level 6 takes 4x as long on a 12-MP map for ~15% less.
    options = {"quality": JPEG_QUALITY} if file_format == "JPEG" else {"compress_level": 1}
    files.atomic_write(path, lambda tmp: image.save(tmp, format=file_format, **options))


def write_outputs(paths, rgb, blur_map, threshold=None, overwrite=False):
    """Writes one photo's outputs atomically; returns the paths kept as they were."""
    pictures = {
        "maps": lambda: image_io.map_to_uint8(blur_map),
        "overlays": lambda: visualize.overlay(rgb, blur_map, threshold=threshold),
        "panels": lambda: visualize.side_by_side(rgb, blur_map, threshold=threshold),
        "masks": lambda: visualize.binary_mask(blur_map, threshold),
    }
    kept = []
    for kind, path in paths.items():
        if path.exists() and not overwrite:
            kept.append(path)
            continue
        save_image(path, pictures[kind]())
    return kept


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


# === Command line ===


def add_arguments(parser):
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="photos, folders of photos, or glob patterns (quote them, e.g. 'shots/*.jpg')",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--model", metavar="PATH_OR_NAME",
        help="a .keras file (e.g. from `python -m training.train`), a SavedModel "
        "folder, a .tflite file, or a pretrained model name (default: the "
        "shipped default model)",
    )
    parser.add_argument(
        "--threshold", type=float, metavar="T",
        help="also write binary masks (255 where blur >= T, 0..1) to OUT/masks/",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace existing outputs (default: keep them; skip photos already done)",
    )
    parser.add_argument(
        "--inference-size", type=int, metavar="N",
        help="square size the network runs at (default: the size the model was saved with)",
    )
    parser.add_argument("--image-size", type=int, dest="inference_size", help=argparse.SUPPRESS)
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help="photos per network call (default: %(default)s)",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="search folders' subfolders too"
    )
    parser.add_argument(
        "--format", dest="picture_format", choices=sorted(PICTURE_FORMATS),
        default="jpg", help="file format of overlays and panels (default: jpg)",
    )


def run(args):
    """Runs `keras-defusion detect`; returns the exit status.

    0: every photo done or skipped; 1: some input failed; 2
    (`errors.EXIT_ERROR`, raised as an error): bad options or no usable model;
    130: stopped by Ctrl-C (the summary says what was done).
    """
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if args.inference_size is not None:
        check_inference_size(args.inference_size, "--inference-size")

    from keras_defusion.inference.detector import load_detector

    detector = load_detector(args.model, inference_size=args.inference_size)
    print(
        f"model: {detector.source} ({detector.kind}, runs at "
        f"{detector.image_size} x {detector.image_size})",
        file=sys.stderr,
    )
    summary = detect_paths(
        args.paths,
        args.out,
        detector,
        threshold=args.threshold,
        overwrite=args.overwrite,
        recursive=args.recursive,
        batch_size=args.batch_size,
        picture_format=args.picture_format,
    )
    print(summary.format())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.ok else 1
