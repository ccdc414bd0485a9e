"""Benchmark scripts; each writes JSON (see README)."""

import os


def add_out_arguments(parser):
    """`--out FILE` (required) and `--overwrite`, for scripts that write JSON."""
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def parse_args_keeping_results(parser, argv=None):
    """Parses `argv`; an existing `--out` is refused unless `--overwrite`."""
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it")
    return args
