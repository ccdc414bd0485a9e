"""Exports a DeFusionNet `.keras` file as a SavedModel for TF Serving.

    python -m export.saved_model --model model.keras --out serving/ \\
        [--name defusionnet] [--version 1] [--overwrite]

writes `serving/defusionnet/1/` (saved_model.pb, variables/, assets/) with
the signatures `serving_default` (float32 RGB 0..255 images) and
`detect_encoded` (JPEG/PNG bytes). Point TF Serving at it with
`--model_base_path=$PWD/serving/defusionnet --model_name=defusionnet`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.saved_model",
        description="Export a DeFusionNet .keras file as a SavedModel for TF Serving.",
    )
    parser.add_argument("--model", required=True,
                        help="a .keras file saved from DeFusionNet, or a shipped model's name")
    parser.add_argument("--out", required=True, help="TF Serving's base folder")
    parser.add_argument("--name", default="defusionnet", help="model name (a folder under --out)")
    parser.add_argument("--version", type=int, default=1, help="version folder, a positive integer")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from keras_defusion import export as export_lib
    from keras_defusion.errors import KerasDefusionError

    try:
        target = export_lib.saved_model_dir(args.out, args.name, args.version)
    except ValueError as error:
        parser.error(str(error))
    if os.path.exists(target) and not args.overwrite:
        parser.error(f"{target} already exists; pick another --version or pass --overwrite")
    try:
        model = export_lib.load_model_file(args.model)
    except KerasDefusionError as error:
        parser.error(f"--model {error}")
    try:
        path = export_lib.export_saved_model(
            model, args.out, name=args.name, version=args.version, overwrite=args.overwrite
        )
    except (export_lib.ExportError, ValueError, OSError) as error:
        # OSError: an unwritable --out, or a version written meanwhile.
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = model.defusion_config.inference_size
    print(f"SavedModel: {path}")
    print(f"  {export_lib.SERVING_SIGNATURE}: images float32 [N, H, W, 3] RGB 0..255 -> blur_map [N, H, W, 1]")
    print(
        f"  {export_lib.ENCODED_SIGNATURE}: encoded string [N] (JPEG/PNG bytes, run at {size}x{size}) "
        "-> blur_map [N, Hmax, Wmax, 1], height, width"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
