"""The `keras-defusion` command line: a thin layer over library functions.

Each subcommand lives in its own module that exposes
`add_arguments(parser)` and `run(args) -> int` (the exit status).
"""

import argparse
import importlib
import sys

# subcommand name -> (module, one-line help)
SUBCOMMANDS = {
    "detect": ("keras_defusion.cli.detect", "detect blur in photos"),
    "evaluate": ("keras_defusion.cli.evaluate", "score blur maps like the paper"),
    "info": ("keras_defusion.cli.info", "build a model and print its summary"),
}


def build_parser():
    from keras_defusion.version import __version__

    parser = argparse.ArgumentParser(
        prog="keras-defusion",
        description="DeFusionNet defocus blur detection.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
