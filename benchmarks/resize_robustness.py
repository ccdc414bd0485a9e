"""How much a model's map depends on how the photo was downscaled.

Phone runtimes resize photos themselves: MediaPipe's ImageSegmenter, OpenCV's
INTER_LINEAR and `tf.image.resize`'s default sample bilinearly without
antialiasing, others use area or nearest. For each photo and each method of
`keras_defusion.data.pipeline.RESIZE_METHODS`, the model's map at its inference size
is compared with the map of the antialiased resize `detect` uses (mean
|difference|), and each method's MAE against the mask is reported. Writes
JSON:

    python -m benchmarks.resize_robustness --model defusionnet-scratch-cuhk \\
        --data ../shared/data/CUHK/test --out /tmp/resize_robustness.json
"""

import argparse
import os
import pathlib
import sys

import numpy as np

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import data
from keras_defusion import evaluation
from keras_defusion import export as export_lib
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.io import files
from keras_defusion.io import images as image_io

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "test"
REFERENCE = "antialiased"


def method_maps(network, photo, size, input_reduction=1, methods=data.RESIZE_METHODS):
    """{method: map [size, size]} of one RGB photo resized by each method to
    `input_reduction * size`, then reduced inside as a TFLite file does."""
    maps = {}
    for method in methods:
        resized = np.clip(np.asarray(data.resize_photo(
            photo.astype(np.float32), size * input_reduction, method)), 0, 255)
        reduced = export_lib.reduce_input(resized[None], input_reduction)
        maps[method] = np.asarray(network(reduced))[0, ..., 0]
    return maps


def robustness(model, data_dir, limit=None, size=None, input_reduction=1):
    """Per-method mean |difference| to the antialiased map and to detect's, and MAE."""
    size = size or model_inference_size(model)
    network = model.inference_model()
    masks = evaluation.gt_files(data_dir)
    photos = evaluation.pair_by_stem(masks, os.path.join(data_dir, "images"), what="photo")
    stems = sorted(masks)[:limit]
    differences = {method: [] for method in data.RESIZE_METHODS}
    to_detect = {method: [] for method in data.RESIZE_METHODS}
    errors = {method: [] for method in data.RESIZE_METHODS}
    for stem in stems:
        photo = image_io.load_rgb(photos[stem])
        maps = method_maps(network, photo, size, input_reduction)
        detect_map = method_maps(network, photo, size, 1, (REFERENCE,))[REFERENCE]
        gt = image_io.load_mask(masks[stem]).astype(np.float32)
        gt = np.asarray(data.resize_photo(gt[..., None], size, "antialiased"))[..., 0] >= 0.5
        for method, blur in maps.items():
            differences[method].append(float(np.abs(blur - maps[REFERENCE]).mean()))
            to_detect[method].append(float(np.abs(blur - detect_map).mean()))
            errors[method].append(float(np.abs(blur - gt).mean()))
    return {
        method: {
            "mean_abs_difference_to_antialiased": float(np.mean(differences[method])),
            "max_abs_difference_to_antialiased": float(np.max(differences[method])),
            "mean_abs_difference_to_detect": float(np.mean(to_detect[method])),
            "max_abs_difference_to_detect": float(np.max(to_detect[method])),
            "mae_at_inference_size": float(np.mean(errors[method])),
        }
        for method in data.RESIZE_METHODS
    } | {"photos": len(stems), "inference_size": size, "input_reduction": input_reduction}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras file or a shipped model's name")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a folder with images/ and gt/")
    add_out_arguments(parser)
    parser.add_argument("--limit", type=int, help="only the first N photos")
    parser.add_argument("--input-reduction", type=int, default=export_lib.DEFAULT_INPUT_REDUCTION,
                        choices=export_lib.INPUT_REDUCTIONS,
                        help="as `keras-defusion export tflite` (1: resize straight to the "
                             "inference size)")
    args = parse_args_keeping_results(parser, argv)
    model = export_lib.load_model_file(args.model)
    result = {"model": args.model, "data": args.data,
              **robustness(model, args.data, args.limit, input_reduction=args.input_reduction)}
    files.write_json(args.out, result)
    for method in data.RESIZE_METHODS:
        scores = result[method]
        print(f"{method:12s} mean |diff| {scores['mean_abs_difference_to_antialiased']:.4f}, "
              f"to detect {scores['mean_abs_difference_to_detect']:.4f}  "
              f"MAE {scores['mae_at_inference_size']:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
