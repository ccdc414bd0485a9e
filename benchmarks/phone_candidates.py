"""int8 latency of phone-model candidates against MediaPipe's selfie segmenter.

How the `phone` model preset was chosen (issue 12): each candidate is the
DeFusionNet head on a `keras.applications` MobileNet, built untrained (speed
does not depend on the weights), exported to int8 at 256x256 with calibration
photos, and timed in LiteRT on 1 CPU thread, interleaved with the selfie
segmenter in the same run. Ratios to the selfie segmenter are the figures to
compare (target: at most 2.5x). Writes JSON:

    python -m benchmarks.phone_candidates --out /tmp/phone_candidates.json
"""

import argparse
import os
import pathlib
import platform
import sys
import tempfile

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from benchmarks.mobile import cpu_latencies
from benchmarks.mobile import selfie_segmenter
from keras_defusion import export as export_lib
from keras_defusion.io.files import write_json
from keras_defusion.models.defusionnet.model import DeFusionNet

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "data" / "CUHK" / "train" / "images"
SIZE = 256


def _head(working_stride, channels=16):
    return {"side_channels": channels, "fusion_channels": channels,
            "working_stride": working_stride, "separable": True}


# `phone` preset overrides; "phone" itself is the chosen one.
CANDIDATES = {
    "phone": {},
    "mobilenet_v3_small_stride4": {"backbone": "mobilenet_v3_small", **_head(4)},
    "mobilenet_v3_small_stride8": {"backbone": "mobilenet_v3_small", **_head(8)},
    "mobilenet_v2_0.35_stride8": {"encoder_width": 0.35, **_head(8)},
    "mobilenet_v2_0.5_stride4": {"encoder_width": 0.5, **_head(4)},
    "mobilenet_v2_0.75_stride4": {"encoder_width": 0.75, **_head(4)},
    "mobilenet_v2_1.0_stride4": {"encoder_width": 1.0, **_head(4)},
    "mobilenet_v3_large_0.75_stride8": {"backbone": "mobilenet_v3_large",
                                        "encoder_width": 0.75, **_head(8)},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_arguments(parser)
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="calibration photos")
    parser.add_argument("--selfie", help="selfie_segmentation.tflite (default: fetched)")
    parser.add_argument("--rounds", type=int, default=30, help="timed runs per file")
    args = parse_args_keeping_results(parser, argv)

    photos = sorted(pathlib.Path(args.photos).iterdir())[:16]
    files = {"selfie": selfie_segmenter(args.selfie)}
    report = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
              "image_size": SIZE, "rounds": args.rounds, "threads": 1,
              "note": "shared, noisy machine: compare ratios measured in this run",
              "candidates": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, overrides in CANDIDATES.items():
            model = DeFusionNet("phone", backbone_weights=None, **overrides)
            path = os.path.join(folder, f"{name}.tflite")
            export_lib.export_tflite(model, path, "int8", image_size=SIZE, input_reduction=1,
                                     calibration_images=photos, metadata=False)
            files[name] = path
            report["candidates"][name] = {
                "config": model.defusion_config.to_dict(),
                "parameters": int(model.count_params()),
                "file_bytes": os.path.getsize(path)}
        latency = cpu_latencies(files, 1, args.rounds)
    report["selfie_cpu_seconds"] = latency["selfie"]
    for name, entry in report["candidates"].items():
        entry["cpu_seconds"] = latency[name]
        entry["ratio_to_selfie"] = latency[name] / latency["selfie"]
        print(f"{name}: {latency[name] * 1e3:.2f} ms, "
              f"{entry['ratio_to_selfie']:.2f}x selfie")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
