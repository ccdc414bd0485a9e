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

Library use (`keras_defusion.inference.batch_detect`):
    detector = load_detector("model.keras")
    summary = detect_paths(["photos/"], "out", detector, threshold=0.5)
"""

import argparse
import sys

from keras_defusion.errors import UsageError
from keras_defusion.inference.batch_detect import DEFAULT_BATCH_SIZE
from keras_defusion.inference.batch_detect import detect_paths
from keras_defusion.inference.contract import check_inference_size
from keras_defusion.io.photo_files import PICTURE_FORMATS

# The shell's status for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


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
