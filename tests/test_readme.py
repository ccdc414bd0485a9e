"""The README and the model cards, tested: their flags, numbers and commands.

Fast checks (default suite): every flag a shown command names exists in that
program's `--help`, and every number marked as quoted from
`benchmarks/results/*.json` equals the JSON, rounded as printed. Slow checks
(CI's second run): the Python block runs, and every shell command runs,
scaled down (tiny models, few steps, small sizes) and pointed at temporary
folders. Each command must match a rule below, so a new README command
fails here until it is tested or its skip is given a reason.
"""

import contextlib
import glob
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from benchmarks import quoted_numbers as qn
from tests import harness
from tests import readme_commands as rc
from tests.conftest import REPO_ROOT

DOCS = qn.documents()


def _doc_id(path):
    return str(path.relative_to(REPO_ROOT))


def _all_commands(path):
    text = path.read_text()
    return rc.shell_commands(text) + rc.inline_commands(text)


def _help_text(program):
    kind, name = program
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        if kind == "keras-defusion":
            from keras_defusion import cli

            cli.main([*name.split(), "--help"])
        else:
            importlib.import_module(name).main(["--help"])
    return out.getvalue()


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_every_flag_a_command_names_is_in_its_help(doc):
    checked = 0
    helps = {}
    for command in _all_commands(doc):
        program = rc.program_of(command)
        if program is None or program == ("python -m", "pytest"):
            continue
        if program not in helps:
            helps[program] = _help_text(program)
        for flag in rc.flags_of(command):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[program]), (
                f"{_doc_id(doc)}: {command!r} names {flag}, which "
                f"{' '.join(program)} --help does not list")
            checked += 1
    if doc.name == "README.md":
        assert checked > 40, checked


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_every_marked_number_equals_its_json_as_printed(doc):
    quoted = qn.quoted_numbers(doc.read_text())
    if doc.name == "README.md":
        assert len(quoted) >= 10, len(quoted)
    for printed, file, keys, scale in quoted:
        value = qn.quoted_value(file, keys, scale)
        expected = qn.formatted(value, printed)
        normal = printed if "e" not in printed.lower() else qn.formatted(float(printed), printed)
        assert normal == expected, (f"{_doc_id(doc)}: {printed} for {file} {keys} = {value}; "
                                    "rerun `python -m benchmarks.quoted_numbers --write`")


def test_the_number_markers_are_read():
    text = "max-F **0.962**<!-- json a.json x/y (z) --> and 146<!-- json b.json t*1000 --> ms"
    assert qn.quoted_numbers(text) == [("0.962", "a.json", "x/y (z)", 1),
                                       ("146", "b.json", "t", 1000)]
    assert qn.formatted(0.96249, "0.962") == "0.962"
    assert qn.formatted(0.9626, "0.962") == "0.963"
    assert qn.formatted(4.94e-5, "4.9e-5") == "4.9e-5"


def test_refresh_rewrites_marked_numbers_with_their_printed_decimals(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"a": {"b": 0.96251}, "t": 0.0071}))
    (tmp_path / "s.json").write_text(json.dumps({"bytes": 2983224}))
    text = ("F 0.900<!-- json r.json a/b --> in **5**<!-- json r.json t*1000 --> ms, 0.5 kept, "
            "1.0<!-- json s.json bytes*1e-6 --> MB")
    assert qn.refresh(text, tmp_path) == (
        "F 0.963<!-- json r.json a/b --> in **7**<!-- json r.json t*1000 --> ms, 0.5 kept, "
        "3.0<!-- json s.json bytes*1e-6 --> MB")


# --- Running what the README shows (slow) ------------------------------------------

SCALED_TRAINING = ["--steps", "2", "--steps-per-epoch", "2", "--batch-size", "2",
                   "--image-size", "64", "--weights", "none", *harness.TINY_MODEL_FLAGS]

# Commands that are not run, with the reason.
SKIPPED = {
    r"^python3 -m venv": "the install is what CI itself does, on a fresh machine",
    r"^\. \.venv/bin/activate": "part of the install",
    r"^pip install": "the install is what CI itself does, on a fresh machine",
    r"^python -m pytest": "this is the test suite",
    r"^bash \.ci/fetch_lavapipe\.sh": "downloads Debian packages; CI runs it",
    r"^export ": "environment for the commands after it",
}


def _is_skipped(command):
    return any(re.search(pattern, command) for pattern in SKIPPED)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return _make_sandbox(tmp_path_factory.mktemp("readme"))


@pytest.fixture
def card_sandbox(tmp_path):
    """A sandbox of its own per card: the cards train into the same folders
    (runs/...) as the README's commands."""
    return _make_sandbox(tmp_path)


def _make_sandbox(root):
    """A working folder shaped like a clone's: samples/, a small synthetic
    CUHK-like tree (train and test, images/ + gt/) at ../shared/data/CUHK,
    and the inputs and placeholders the README's commands name."""
    from PIL import Image

    from keras_defusion.data import synthetic

    work = root / "work"
    work.mkdir()
    shutil.copytree(REPO_ROOT / "samples", work / "samples")
    cuhk = root / "shared" / "data" / "CUHK"
    synthetic.write_synthetic_folder(cuhk / "train", count=10, size=72, seed=0)
    synthetic.write_synthetic_folder(cuhk / "test", count=3, size=72, seed=1)
    (work / "CUHK").symlink_to(cuhk)
    for name in ("DIR", "VALDIR"):
        (work / name).symlink_to(cuhk / "train")
    # detect's example inputs, and prediction folders for evaluate --pred.
    photos = sorted((work / "samples" / "images").iterdir())
    (work / "photos").mkdir()
    shutil.copy(photos[0], work / "photos")
    (work / "more").mkdir()
    Image.open(photos[1]).convert("RGB").save(work / "more" / "two.jpg")
    Image.open(photos[2]).convert("RGB").save(work / "one.png")
    for folder in ("outputs/maps", "lbp_maps"):
        shutil.copytree(cuhk / "test" / "gt", work / folder)
    return work


# Placeholders and elisions in the README's commands, and what they stand for.
PLACEHOLDERS = {"--data ...": "--data ../shared/data/CUHK/train",
                "--out DIR": "--out runs/from-dir",
                "PATH_OR_NAME": "runs/cuhk/final.keras"}


def _scaled(command, cwd):
    """The command as the test runs it: our programs from this checkout, small."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = rc.split_command(command.replace("[", " ").replace("]", " "))
    program = rc.program_of(command)
    if program and program[0] == "keras-defusion":
        words = [sys.executable, "-m", "keras_defusion.cli", *words[1:]]
    elif program:
        words = [sys.executable, *words[1:]]
    if program in (("python -m", "training.train"), ("keras-defusion", "train")):
        words += SCALED_TRAINING
    expanded = []
    for word in words:
        matches = sorted(glob.glob(word, root_dir=cwd)) if "*" in word else []
        expanded += matches or [word]
    return expanded


COMMAND_TIMEOUT = 600  # seconds for one scaled-down command


def _env():
    """A command's environment: our programs from this checkout."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(words, cwd):
    return subprocess.run(words, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT)


# Flags whose value a command writes; every other word may be read.
OUTPUT_FLAGS = ("--out", "--json", "--plots", "--assets-root")


def _paths_of(words):
    """(written, read): the folders and files a command's words name."""
    written, read = set(), set()
    for flag, word in zip(["", *words], words):
        path = os.path.normpath(word.split("=")[-1])
        (written if flag in OUTPUT_FLAGS else read).add(path)
    return written, read


def _inside(path, folder):
    return path == folder or path.startswith(folder + os.sep)


def _depends(later, earlier):
    """Whether `later` (words) reads or writes where `earlier` writes."""
    written, read = _paths_of(later)
    earlier_written, _ = _paths_of(earlier)
    return any(_inside(path, out) or _inside(out, path)
               for out in earlier_written for path in written | read
               if path not in (".", ".."))


def _run_in_order_of_need(commands, cwd, jobs=2):
    """Runs each (command, words), at most `jobs` at once, each after the
    earlier ones it depends on (`_depends`); the README's chains (train, then
    export; train, then fine-tune, then package) are independent of each
    other. Stops at the first failure, naming it."""
    needs = [{j for j in range(i) if _depends(commands[i][1], commands[j][1])}
             for i in range(len(commands))]
    env = _env()
    waiting, running, done = list(range(len(commands))), {}, set()
    try:
        while waiting or running:
            for index in [i for i in waiting if needs[i] <= done][:jobs - len(running)]:
                log = tempfile.TemporaryFile("w+")
                running[index] = (subprocess.Popen(commands[index][1], cwd=cwd, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT,
                                                   text=True), log, time.monotonic())
                waiting.remove(index)
            time.sleep(0.2)
            for index, (process, log, start) in list(running.items()):
                if process.poll() is None and time.monotonic() - start < COMMAND_TIMEOUT:
                    continue
                process.kill()
                process.wait()
                log.seek(0)
                output = log.read()
                log.close()
                del running[index]
                assert process.returncode == 0, (*commands[index], output[-3000:])
                done.add(index)
    finally:
        for process, log, _ in running.values():
            process.kill()
            log.close()
    return len(done)


def test_commands_wait_for_the_commands_whose_files_they_use():
    train = ["keras-defusion", "train", "--out", "runs/cuhk"]
    assert _depends(["keras-defusion", "export", "--model", "runs/cuhk/final.keras"], train)
    assert _depends([*train, "--resume"], train)
    assert _depends(["python", "-m", "training.package", "--run", "runs/phone-ft",
                     "--assets-root", "runs/shipped"],
                    ["python", "-m", "training.package", "--run", "runs/robust-ft",
                     "--assets-root", "runs/shipped"])
    assert not _depends(["keras-defusion", "train", "--out", "runs/phone"], train)
    assert not _depends(["keras-defusion", "evaluate", "--pred", "ours=outputs/maps"],
                        ["keras-defusion", "detect", "photos/", "--out", "outputs/samples"])


@pytest.mark.slow
def test_every_shell_command_of_the_readme_runs_scaled_down(sandbox):
    commands = [(command, _scaled(command, sandbox))
                for command in rc.shell_commands((REPO_ROOT / "README.md").read_text())
                if not _is_skipped(command)]
    assert len(commands) >= 10, len(commands)
    assert _run_in_order_of_need(commands, sandbox) == len(commands)
    _run_python_blocks(sandbox)


# What the Python block leaves to the reader: its inputs, and ImageNet weights
# (which cannot download offline; the encoder is the same with random ones).
PYTHON_PRELUDE = """
import shutil
import numpy as np
from PIL import Image
photo = sorted(__import__("pathlib").Path("samples/images").iterdir())[0]
for name in ("photo.jpg", "a.jpg"):
    Image.open(photo).convert("RGB").save(name)
pil_image = Image.open(photo)
array = np.asarray(pil_image)
images = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
"""
PYTHON_SUBSTITUTIONS = {'backbone_weights="imagenet"': "backbone_weights=None"}


def _run_python_blocks(sandbox):
    """Runs each Python block of the README in the sandbox, after the shell
    commands made the artefacts it loads (runs/cuhk/final.keras, serving/,
    defusionnet_int8.tflite)."""
    blocks = rc.code_blocks((REPO_ROOT / "README.md").read_text(), "python")
    assert blocks
    for block in blocks:
        for text, replacement in PYTHON_SUBSTITUTIONS.items():
            block = block.replace(text, replacement)
        script = sandbox / "readme_block.py"
        script.write_text(PYTHON_PRELUDE + block)
        result = _run([sys.executable, str(script)], sandbox)
        assert result.returncode == 0, (block, result.stderr[-3000:])


# --- Running what the model cards show (slow) ------------------------------------------

# Each card command, as the test runs it in the sandbox: the same program and
# flags, plus inputs the card leaves to the reader and the sandbox's small
# CUHK-like data (`--data`), so that nothing reads the real dataset.
CARD_INPUTS = {
    "keras-defusion detect": " samples/images --out card/maps",
    "benchmarks.shipped_cuhk": " --data CUHK/test",
    "benchmarks.resize_robustness": " --data CUHK/test --limit 2",
    "benchmarks.detect_speed": " --images samples/images --limit 2 --repeats 1",
}
CARD_PLACEHOLDERS = {"--out FILE": "--out card/result.json --overwrite",
                     "--baseline-maps DIR": "--baseline-maps card/baselines"}
# Card commands not run, with the reason.
CARD_SKIPPED = {
    r"benchmarks\.phone_candidates": "times eight candidate networks for minutes; "
                                     "tests/test_benchmarks.py checks its arguments",
    r"--preset scratch": "the README's training command, run scaled above",
    r"benchmarks\.val_levers": "needs the README's training run runs/robust-ft; "
                               "tests/test_benchmarks.py runs it on a tiny run",
    r"--run runs/crop320-ft": "needs that 320-px fine-tune; the README's "
                              "val_inference_size command runs scaled above",
    r"--run runs/long-ft": "the README's commands that made the default model "
                           "(size choice, packaging), run scaled above",
    r"training\.average --models runs/": "averages the issue-15 runs' checkpoints; "
                                          "tests/test_average.py runs it on tiny models",
    r"--model runs/soups/": "packages the issue-15 average; the README's package "
                            "command of an average runs scaled above",
    r"runs/(photo|plain)-ft": "needs the issue-15 fine-tunes of defusionnet-scratch-cuhk-320; "
                              "tests/test_benchmarks.py and tests/test_average.py "
                              "run the tools on tiny models",
    r"training\.ensemble --models runs/": "combines the issue-15 runs' models; "
                                           "tests/test_ensemble.py runs it on tiny models",
    r"--model runs/ensembles/": "packages or scores the issue-15 ensemble; "
                                "tests/test_ensemble.py runs the tools on tiny models",
    # The phone card's training, size choice and packaging are the README's
    # "The shipped model" commands, run scaled above.
    r"--preset phone|--run runs/phone": "the README's phone commands, run scaled above",
}


def _card_command(command):
    """A card's command with its inputs and placeholders filled in."""
    for program, inputs in CARD_INPUTS.items():
        if program in command:
            command += inputs
    for placeholder, value in CARD_PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return command


@pytest.mark.slow
@pytest.mark.parametrize("card", DOCS[1:], ids=_doc_id)
def test_every_command_of_a_model_card_runs_scaled_down(card_sandbox, card):
    sandbox = card_sandbox
    for method in ("lbp", "hifst"):  # maps for --baseline-maps
        if not (sandbox / "card" / "baselines" / method).exists():
            shutil.copytree(sandbox / "CUHK" / "test" / "gt", sandbox / "card" / "baselines" / method)
    text = card.read_text()
    commands = rc.shell_commands(text) + rc.inline_commands(text)
    ran = 0
    for command in commands:
        if any(re.search(pattern, command) for pattern in CARD_SKIPPED):
            continue
        words = _scaled(_card_command(command), sandbox)
        result = _run(words, sandbox)
        assert result.returncode == 0, (command, words, result.stderr[-3000:])
        ran += 1
    assert ran >= 2, ran
