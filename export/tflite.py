"""Exports a DeFusionNet `.keras` file as a TFLite model for phones.

    python -m export.tflite --model model.keras --mode MODE --out model.tflite \\
        [--calibration DIR] [--size N] [--io-dtype uint8|int8] [--num-calibration N]

MODE is one of float32, float16, dynamic, int8; int8 (full integer) needs
--calibration, a folder of real photos. Writes the model and a JSON sidecar
`model.tflite.json` (input size and dtype, quantisation, output meaning).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_defusion import export as export_lib  # noqa: E402  (after the log level is set)
from keras_defusion.errors import KerasDefusionError  # noqa: E402

MODES = export_lib.TFLITE_MODES


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.tflite",
        description="Export a DeFusionNet .keras file as a TFLite model.",
    )
    parser.add_argument("--model", required=True,
                        help="a .keras file saved from DeFusionNet, or a shipped model's name")
    parser.add_argument("--mode", required=True, choices=MODES, help="quantisation mode")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--calibration", help="folder of real photos (int8 mode)")
    parser.add_argument("--size", type=int, help="square input side (default: the model's inference_size)")
    parser.add_argument("--io-dtype", default="uint8", choices=("uint8", "int8"),
                        help="input/output type of int8 files (default uint8)")
    parser.add_argument("--num-calibration", type=int, default=100,
                        help="at most this many calibration photos (default 100)")
    parser.add_argument("--no-metadata", action="store_true",
                        help="do not embed TFLite (Task library) metadata")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "int8":
        if not args.calibration:
            parser.error("--mode int8 needs --calibration DIR, a folder of real photos")
        if not os.path.isdir(args.calibration):
            parser.error(f"--calibration {args.calibration}: no such folder")
    elif args.calibration:
        parser.error(f"--calibration is only used by --mode int8, not {args.mode}")
    if args.size is not None and args.size < 32:
        parser.error(f"--size must be at least 32, got {args.size}")
    if args.num_calibration < 1:
        parser.error(f"--num-calibration must be positive, got {args.num_calibration}")

    try:
        model = export_lib.load_model_file(args.model)
    except KerasDefusionError as error:
        parser.error(f"--model {error}")
    try:
        path = export_lib.export_tflite(
            model,
            args.out,
            mode=args.mode,
            image_size=args.size,
            calibration_images=args.calibration,
            io_dtype=args.io_dtype,
            num_calibration=args.num_calibration,
            metadata=not args.no_metadata,
        )
    except (export_lib.ExportError, ValueError, OSError) as error:
        # ValueError covers image_io.ImageReadError (an unreadable calibration
        # photo, named in the message); OSError an unwritable --out.
        print(f"error: {error}", file=sys.stderr)
        return 2
    sidecar = export_lib.tflite_sidecar_path(path)
    print(f"TFLite ({args.mode}): {path} ({os.path.getsize(path)} bytes)")
    print(f"  sidecar: {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
