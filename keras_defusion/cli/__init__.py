"""The `keras-defusion` command line: a thin layer over library functions.

Each subcommand lives in its own module that exposes
`add_arguments(parser)` and `run(args) -> int` (the exit status). Any
`KerasDefusionError` (or an unusable value or file) ends the command with
`error: ...` on stderr and exit status `errors.EXIT_ERROR`; a
`DataWarning` prints as `warning: ...` and the command goes on.
"""

import argparse
import importlib
import logging
import os
import sys
import warnings

from keras_defusion.errors import EXIT_ERROR
from keras_defusion.errors import DataWarning
from keras_defusion.errors import KerasDefusionError

# subcommand name -> (module, one-line help)
SUBCOMMANDS = {
    "detect": ("keras_defusion.cli.detect", "detect blur in photos"),
    "evaluate": ("keras_defusion.cli.evaluate", "score blur maps like the paper"),
    "train": ("keras_defusion.cli.train", "train DeFusionNet on image/mask folders"),
    "export": ("keras_defusion.cli.export", "export a model for TF Serving or phones"),
    "info": ("keras_defusion.cli.info", "build a model and print its summary"),
}
VERBOSE_HELP = "show TensorFlow's log lines (hidden by default)"


def quiet_tensorflow():
    """Hides TensorFlow's log lines: C++ ones (for processes started from
    here, and for this one when set before TensorFlow is imported) and the
    Python loggers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


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
        has_verbose = any("--verbose" in action.option_strings for action in sub._actions)
        if not has_verbose and sub._subparsers is None:  # nested ones add their own
            sub.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def show_data_warnings():
    """Prints each `DataWarning` (a file that is usable but suspicious) as a
    `warning: ...` line on stderr; other warnings keep Python's format."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    return show


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not getattr(args, "verbose", False):
        quiet_tensorflow()
    module = importlib.import_module(args._module)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_data_warnings()
            return module.run(args)
    except (KerasDefusionError, ValueError, OSError) as error:
        # ValueError and OSError: an unusable value or file the library
        # refused (its message names it), not a bug to show as a traceback.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
