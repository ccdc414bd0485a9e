"""Per-layer int8 error of a model, from TensorFlow Lite's QuantizationDebugger.

Converts the model as `export_tflite(mode="int8")` does, runs the debugger on
calibration photos and writes its per-layer statistics as JSON, worst layer
first (by the RMSE of the quantization error over the layer's scale, the
debugger's own measure). A layer far above the others is where int8 loses
accuracy (before issue 11: the flip of the RGB->BGR preprocessing, 100x any
convolution). Usage:

    python -m benchmarks.quantization_debug --model defusionnet-scratch-cuhk \\
        --calibration ../shared/data/CUHK/train/images --out /tmp/quantization.json
"""

import argparse
import csv
import io
import math
import sys

import tensorflow as tf

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from keras_defusion import export as export_lib
from keras_defusion.inference.contract import model_inference_size
from keras_defusion.io import files


def layer_errors(model, calibration_dir, size=None, num_calibration=50,
                 input_reduction=export_lib.DEFAULT_INPUT_REDUCTION):
    """The debugger's per-layer rows, worst first."""
    size = int(size or model_inference_size(model))
    calibration = export_lib.calibration_photos(calibration_dir, size * input_reduction,
                                                num_calibration)
    with export_lib.tflite_converter(model, "int8", size, calibration,
                                     input_reduction=input_reduction) as converter:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([batch] for batch in calibration))
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                parsed[key] = value
        scale = parsed.get("scale")
        rmse = parsed.get("mean_squared_error")
        if isinstance(scale, float) and isinstance(rmse, float) and scale > 0:
            parsed["rmse_over_scale"] = math.sqrt(rmse) / scale
        rows.append(parsed)
    rows.sort(key=lambda r: -r.get("rmse_over_scale", 0.0))
    return {"inference_size": size, "input_reduction": input_reduction,
            "calibration_photos": len(calibration), "layers": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras file or a shipped model's name")
    parser.add_argument("--calibration", required=True, help="a folder of real photos")
    parser.add_argument("--num-calibration", type=int, default=50)
    parser.add_argument("--inference-size", type=int, help="default: the model's")
    parser.add_argument("--input-reduction", type=int, default=export_lib.DEFAULT_INPUT_REDUCTION,
                        choices=export_lib.INPUT_REDUCTIONS, help="as `keras-defusion export tflite`")
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)
    model = export_lib.load_model_file(args.model)
    result = {"model": args.model, **layer_errors(model, args.calibration, args.inference_size,
                                                  args.num_calibration, args.input_reduction)}
    files.write_json(args.out, result)
    for row in result["layers"][:5]:
        print(f"{row.get('op_name', '?'):20s} {row.get('tensor_name', '?')[:70]:70s} "
              f"rmse/scale {row.get('rmse_over_scale', float('nan')):.3f}")
    print(f"wrote {args.out} ({len(result['layers'])} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
