"""Speed of each model preset against the VGG16 encoder alone, on this CPU.

Writes JSON: per preset, median seconds per image (batch 1, 320x320 by
default), the ratio to the encoder measured in the same run, parameters and
multiply-adds. Usage:

    python -m benchmarks.speed --out benchmarks/results/speed.json
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np
import tensorflow as tf

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results

def count_macs(model, height, width):
    """Multiply-adds of every convolution for one image: Conv2D,
    Conv2DTranspose, DepthwiseConv2D and SeparableConv2D.

    Each convolution's `call` is wrapped for one forward pass to record its
    output shape, nested sublayers included.
    """
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    convs = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, kinds)  # Conv2DTranspose is a Conv2D
    ]
    out_shapes = {}
    for layer in convs:
        def recording_call(inputs, _layer=layer, _call=layer.call, **kwargs):
            outputs = _call(inputs, **kwargs)
            out_shapes[id(_layer)] = tuple(outputs.shape)
            return outputs

        layer.call = recording_call
    try:
        model(np.zeros((1, height, width, 3), "float32"))
    finally:
        for layer in convs:
            del layer.call  # drop the instance attribute; the method returns
    macs = 0
    for layer in convs:
        _, out_h, out_w, _ = out_shapes[id(layer)]
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):
            # Each input pixel scatters a kh x kw x filters patch.
            pixels = (out_h // layer.strides[0]) * (out_w // layer.strides[1])
            macs += pixels * kh * kw * layer.kernel.shape[-1] * layer.filters
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, _, channels, multiplier = layer.kernel.shape
            macs += out_h * out_w * kh * kw * channels * multiplier
        elif isinstance(layer, keras.layers.SeparableConv2D):
            _, _, channels, multiplier = layer.depthwise_kernel.shape
            macs += out_h * out_w * channels * multiplier * (kh * kw + layer.filters)
        else:
            macs += out_h * out_w * kh * kw * layer.kernel.shape[-2] * layer.filters
    return macs


def time_model(fn, images, repeats):
    fn(images)  # trace / warm up
    fn(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = fn(images)
        [np.asarray(x) for x in tf.nest.flatten(outputs)]
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--presets", nargs="+", default=["paper", "mobile", "scratch"])
    add_out_arguments(parser)
    args = parse_args_keeping_results(parser, argv)

    import keras

    from keras_defusion import DeFusionNet
    from keras_defusion.models.defusionnet.encoder import build_vgg16_encoder
    from keras_defusion.io.files import write_json

    images = np.random.default_rng(0).uniform(
        0, 255, (1, args.size, args.size, 3)).astype("float32")
    candidates = {"vgg16_encoder": build_vgg16_encoder(None)}
    for preset in args.presets:
        candidates[preset] = DeFusionNet(preset, backbone_weights=None).inference_model()
    functions = {name: tf.function(m, jit_compile=False) for name, m in candidates.items()}

    # Interleave rounds so machine noise hits every model alike.
    samples = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in functions.items():
            samples[name] += time_model(fn, images, 1)
    encoder_median = statistics.median(samples["vgg16_encoder"])
    results = {}
    for name, model in candidates.items():
        median = statistics.median(samples[name])
        results[name] = {
            "median_seconds": median,
            "all_seconds": samples[name],
            "ratio_to_encoder": median / encoder_median,
            "params": int(model.count_params()),
            "gmacs": count_macs(model, args.size, args.size) / 1e9,
        }
        print(f"{name:>14}: {median * 1000:7.1f} ms  x{median / encoder_median:.2f}  "
              f"{results[name]['params'] / 1e6:.1f}M params  {results[name]['gmacs']:.1f} GMACs")
    report = {
        "input": [1, args.size, args.size, 3],
        "repeats": args.repeats,
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
