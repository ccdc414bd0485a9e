"""Classical defocus blur detectors used as baselines in the benchmark.

Both return a float32 blur map [H, W] in [0, 1] at the photo's size, with
1 = blurred, like the DeFusionNet detector:

- `lbp_blur_map`: LBP sharpness (Yi and Eramian, TIP 2016).
- `hifst_blur_map`: HiFST-like DCT of gradient magnitudes (Golestaneh and
  Karam, CVPR 2017).

Command line: `python -m keras_defusion.evaluation.baselines --method lbp --images DIR
--out DIR` writes one 8-bit PNG map per photo (same stem).
"""

import argparse
import functools
import pathlib
import sys
import time

from keras_defusion.errors import EXIT_ERROR
from keras_defusion.errors import KerasDefusionError
from keras_defusion.evaluation.baselines.hifst import hifst_blur_map
from keras_defusion.evaluation.baselines.hifst import import_blur_detector
from keras_defusion.evaluation.baselines.lbp import lbp_blur_map
from keras_defusion.io import images as image_io

METHODS = ("lbp", "hifst")
# Needs the `hifst` install extra (PyPI `blur-detector`, a DCT multiscale
# HiFST variant); not run by default.
OPTIONAL_METHODS = ("hifst-blur-detector",)


def get_baseline(method):
    """The blur-map function of a baseline: a name of METHODS or OPTIONAL_METHODS."""
    if method == "lbp":
        return lbp_blur_map
    if method == "hifst":
        return hifst_blur_map
    if method == "hifst-blur-detector":
        import_blur_detector()  # fail before any photo, saying how to install it
        return functools.partial(hifst_blur_map, backend="blur-detector")
    raise ValueError(
        f"unknown baseline {method!r}; choose from {METHODS + OPTIONAL_METHODS}"
    )


def run_on_folder(method, images_dir, out_dir, overwrite=True, log=None):
    """Runs a baseline on every photo of a folder and writes PNG maps.

    Each map is written atomically as `out_dir/<stem>.png` (white = blurred).
    A photo that cannot be read is reported by name and skipped.

    Args:
        method: "lbp" or "hifst".
        images_dir: folder of photos (not recursive).
        out_dir: output folder (created).
        overwrite: when False, photos whose map already exists are skipped.
        log: optional callable(str) for progress and problems.

    Returns:
        dict with "written" (list of paths), "failed" (list of messages),
        "seconds_per_image" and "cpu_seconds_per_image" (mean wall-clock and
        process CPU time of the method itself, no file I/O; None if none ran).
    """
    blur_map = get_baseline(method)
    images_dir = pathlib.Path(images_dir)
    out_dir = pathlib.Path(out_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: folder not found")
    photos = image_io.list_images(images_dir)
    written, failed, seconds, cpu_seconds = [], [], [], []
    for photo in photos:
        target = out_dir / f"{photo.stem}.png"
        if not overwrite and target.exists():
            continue
        try:
            rgb = image_io.load_rgb(photo)
        except image_io.ImageReadError as e:
            failed.append(str(e))
            if log:
                log(f"skipped: {e}")
            continue
        start, cpu_start = time.perf_counter(), time.process_time()
        prediction = blur_map(rgb)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        image_io.save_png(target, image_io.map_to_uint8(prediction))
        written.append(target)
        if log:
            log(f"{photo.name}: {seconds[-1]:.2f} s")
    return {
        "written": written,
        "failed": failed,
        "seconds_per_image": sum(seconds) / len(seconds) if seconds else None,
        "cpu_seconds_per_image": sum(cpu_seconds) / len(cpu_seconds) if cpu_seconds else None,
    }


def main(argv=None):
    """`python -m keras_defusion.evaluation.baselines`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m keras_defusion.evaluation.baselines",
        description="Run a classical blur detector on a folder of photos; "
        "writes 8-bit PNG blur maps (white = blurred) named like the photos.",
    )
    parser.add_argument("--method", choices=METHODS + OPTIONAL_METHODS, required=True)
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of photos")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the maps")
    parser.add_argument("--skip-existing", action="store_true", help="keep maps already written")
    parser.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    args = parser.parse_args(argv)

    def log(message):
        if not args.quiet or message.startswith("skipped"):
            print(message, file=sys.stderr, flush=True)

    try:
        report = run_on_folder(
            args.method, args.images, args.out, overwrite=not args.skip_existing, log=log
        )
    except (FileNotFoundError, KerasDefusionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    timing = report["seconds_per_image"]
    timing_text = f", {timing:.2f} s per image" if timing is not None else ""
    print(f"{args.method}: wrote {len(report['written'])} maps to {args.out}{timing_text}; "
          f"{len(report['failed'])} unreadable")
    return 1 if report["failed"] else 0
