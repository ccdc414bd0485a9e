"""`keras-defusion info`: build a DeFusionNet and print its summary."""

from keras_defusion.models.defusionnet.presets import MODEL_PRESETS


def add_arguments(parser):
    parser.add_argument(
        "--preset", default="mobile", choices=sorted(MODEL_PRESETS),
        help="model preset (default: mobile)",
    )
    parser.add_argument(
        "--weights", default="none",
        help="encoder weights: imagenet, none, or a local weights file "
        "(default: none, which needs no download)",
    )
    parser.add_argument("--steps", type=int, default=None, help="recurrent steps t")


def run(args):
    from keras_defusion.inference.contract import model_inference_size
    from keras_defusion.models.defusionnet.model import DeFusionNet

    weights = None if args.weights.lower() == "none" else args.weights
    overrides = {} if args.steps is None else {"num_steps": args.steps}
    model = DeFusionNet(args.preset, backbone_weights=weights, **overrides)
    model.summary(line_length=110)
    print(f"config: {model.defusion_config}")
    print(f"inference size: {model_inference_size(model)}")
    print(f"outputs ({len(model.output_names)}): {', '.join(model.output_names)}")
    return 0
