"""`keras-defusion export`: a trained model as a SavedModel or a TFLite file.

    keras-defusion export saved_model --model M --out serving/ [--name N] [--version V] \\
        [--max-pixels N]
    keras-defusion export tflite --model M --mode MODE --out model.tflite \\
        [--calibration DIR] [--inference-size N] [--input-reduction 1|2] \\
        [--io-dtype uint8|int8]

`saved_model` writes `<out>/<name>/<version>/` with the signatures
`serving_default` (float32 RGB 0..255 images) and `detect_encoded`
(JPEG/PNG bytes); point TF Serving at it with
`--model_base_path=$PWD/serving/defusionnet --model_name=defusionnet`.
`tflite` MODE is float32, float16, dynamic or int8; int8 (full integer)
needs --calibration, a folder of real photos. It writes the model and a JSON
sidecar `model.tflite.json`. Its input is --input-reduction (default 2)
times the inference size, reduced inside with the antialiased resize's
kernel, so apps may resize photos any way. M is a `.keras` file from `keras-defusion train`
or a shipped model's name.
"""

import argparse
import os

from keras_defusion.errors import UsageError
from keras_defusion.export.common import MODEL_NAME
from keras_defusion.export.saved_model import DEFAULT_MAX_PIXELS
from keras_defusion.export.saved_model import ENCODED_SIGNATURE
from keras_defusion.export.saved_model import export_saved_model
from keras_defusion.export.saved_model import saved_model_dir
from keras_defusion.export.tflite import DEFAULT_NUM_CALIBRATION
from keras_defusion.export.tflite import IO_DTYPES
from keras_defusion.export.tflite import TFLITE_MODES
from keras_defusion.export.tflite import export_tflite
from keras_defusion.export.tflite import tflite_sidecar_path
from keras_defusion.inference.contract import DEFAULT_INPUT_REDUCTION
from keras_defusion.inference.contract import INPUT_REDUCTIONS
from keras_defusion.inference.contract import SERVING_SIGNATURE
from keras_defusion.inference.contract import check_inference_size
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.models.loading import load_model_file

MODEL_HELP = "a .keras file saved from DeFusionNet, or a shipped model's name"


def add_saved_model_arguments(parser):
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", required=True, help="TF Serving's base folder")
    parser.add_argument("--name", default=MODEL_NAME, help="model name (a folder under --out)")
    parser.add_argument("--version", type=int, default=1, help="version folder, a positive integer")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="detect_encoded refuses images over N pixels before decoding "
                             f"them (default {DEFAULT_MAX_PIXELS})")


def add_tflite_arguments(parser):
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--mode", required=True, choices=TFLITE_MODES, help="quantisation mode")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--calibration", help="folder of real photos (int8 mode)")
    parser.add_argument("--inference-size", type=int, metavar="N",
                        help="square input side (default: the size the model was saved with)")
    parser.add_argument("--size", type=int, dest="inference_size", help=argparse.SUPPRESS)
    parser.add_argument("--input-reduction", type=int, default=DEFAULT_INPUT_REDUCTION,
                        choices=INPUT_REDUCTIONS, metavar="K",
                        help="the input is K times the inference size, reduced inside with "
                             "antialiasing, so any resize by the app gives detect's map "
                             f"(default {DEFAULT_INPUT_REDUCTION}; 1: the inference size as is)")
    parser.add_argument("--io-dtype", default="uint8", choices=IO_DTYPES,
                        help="input/output type of int8 files (default uint8)")
    parser.add_argument("--num-calibration", type=int, default=DEFAULT_NUM_CALIBRATION,
                        help=f"at most this many calibration photos (default {DEFAULT_NUM_CALIBRATION})")
    parser.add_argument("--no-metadata", action="store_true",
                        help="do not embed TFLite (Task library) metadata")


FORMATS = {
    "saved_model": (add_saved_model_arguments, "a SavedModel for TF Serving"),
    "tflite": (add_tflite_arguments, "a TFLite file for phones"),
}


def add_arguments(parser):
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (add, help_text) in FORMATS.items():
        sub = formats.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.add_argument("--verbose", action="store_true",
                         help="show TensorFlow's log lines (hidden by default)")


def run(args):
    """Runs `keras-defusion export FORMAT`; returns the exit status."""
    return run_saved_model(args) if args.format == "saved_model" else run_tflite(args)


def run_saved_model(args):
    target = saved_model_dir(args.out, args.name, args.version)
    if os.path.exists(target) and not args.overwrite:
        raise UsageError(f"{target} already exists; pick another --version or pass --overwrite")
    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be positive, got {args.max_pixels}")
    model = load_model_file(args.model)
    path = export_saved_model(
        model, args.out, name=args.name, version=args.version, overwrite=args.overwrite,
        max_pixels=args.max_pixels,
    )
    size = model_inference_size(model)
    print(f"SavedModel: {path}")
    print(f"  {SERVING_SIGNATURE}: images float32 [N, H, W, 3] RGB 0..255 -> blur_map [N, H, W, 1]")
    print(
        f"  {ENCODED_SIGNATURE}: encoded string [N] (JPEG/PNG bytes, run at {size}x{size}, "
        f"at most {args.max_pixels} pixels each, EXIF orientation applied) "
        "-> blur_map [N, Hmax, Wmax, 1], height, width"
    )
    return 0


def run_tflite(args):
    if args.mode == "int8":
        if not args.calibration:
            raise UsageError("--mode int8 needs --calibration DIR, a folder of real photos")
        if not os.path.isdir(args.calibration):
            raise UsageError(f"--calibration {args.calibration}: no such folder")
    elif args.calibration:
        raise UsageError(f"--calibration is only used by --mode int8, not {args.mode}")
    if args.inference_size is not None:
        check_inference_size(args.inference_size, "--inference-size")
    if args.num_calibration < 1:
        raise UsageError(f"--num-calibration must be positive, got {args.num_calibration}")
    model = load_model_file(args.model)
    path = export_tflite(
        model,
        args.out,
        mode=args.mode,
        inference_size=args.inference_size,
        calibration_images=args.calibration,
        io_dtype=args.io_dtype,
        num_calibration=args.num_calibration,
        metadata=not args.no_metadata,
        input_reduction=args.input_reduction,
    )
    print(f"TFLite ({args.mode}): {path} ({os.path.getsize(path)} bytes)")
    print(f"  sidecar: {tflite_sidecar_path(path)}")
    return 0
