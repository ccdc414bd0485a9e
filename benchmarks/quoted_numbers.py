"""Numbers that the README and the model cards quote from benchmark results.

A quoted number carries a marker right after it naming its JSON file (in
`benchmarks/results/`) and key path, keys separated by "/", list indices as
numbers, and an optional `*N` scale (seconds printed as ms: `*1000`, bytes
as MB: `*1e-6`):

    max-F 0.962<!-- json shipped_cuhk_test.json methods/ours (Keras float32)/max_f -->

`tests/test_readme.py` checks every marked number against its JSON, as
printed. After a benchmark is rerun, rewrite the numbers from the JSON (with
the decimals already printed) rather than by hand:

    python -m benchmarks.quoted_numbers --write
"""

import argparse
import json
import pathlib
import re
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"
MARKER = re.compile(
    r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)(\**\s*<!-- json (\S+) (.+?)(?:\*(\d+(?:\.\d+)?(?:e-?\d+)?))? -->)")


def documents():
    """The README and every shipped model card."""
    return [REPO_ROOT / "README.md",
            *sorted((REPO_ROOT / "keras_defusion" / "assets").glob("*/MODEL_CARD.md"))]


def quoted_numbers(text):
    """(printed text, json file, key path, scale) for every marked number."""
    return [(number, path, keys, _scale(scale))
            for number, _, path, keys, scale in MARKER.findall(text)]


def _scale(text):
    if not text:
        return 1
    return float(text) if any(c in text for c in ".e") else int(text)


def lookup(document, keys):
    """`document` at a "/"-separated key path (list indices as numbers)."""
    value = document
    for key in keys.split("/"):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def printed_decimals(number):
    """Decimals as printed: 0.962 -> 3, 146 -> 0, 4.9e-05 -> mantissa's."""
    mantissa = number.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def formatted(value, printed):
    """`value` written with the decimals (and notation) of `printed`."""
    decimals = printed_decimals(printed)
    if "e" in printed.lower():
        mantissa, exponent = f"{value:.{decimals}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


def quoted_value(file, keys, scale, results=RESULTS):
    """The value a marker names."""
    return lookup(json.loads((pathlib.Path(results) / file).read_text()), keys) * scale


def refresh(text, results=RESULTS):
    """`text` with every marked number rewritten from its JSON."""
    def replace(match):
        printed, marker, file, keys, scale = match.groups()
        value = quoted_value(file, keys, _scale(scale), results)
        return formatted(value, printed) + marker

    return MARKER.sub(replace, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the documents (default: list the numbers that differ)")
    args = parser.parse_args(argv)
    stale = 0
    for path in documents():
        text = path.read_text()
        fresh = refresh(text)
        changed = [(old, new) for old, new in zip(quoted_numbers(text), quoted_numbers(fresh))
                   if old[0] != new[0]]
        for (old, *where), (new, *_) in changed:
            print(f"{path.relative_to(REPO_ROOT)}: {old} -> {new} ({where[0]} {where[1]})")
        stale += len(changed)
        if args.write and changed:
            path.write_text(fresh)
    print(f"{stale} quoted numbers {'rewritten' if args.write else 'differ from their JSON'}")
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    sys.exit(main())
