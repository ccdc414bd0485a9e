"""Every benchmark script keeps committed results unless told to replace them."""

import argparse

import pytest

from benchmarks import add_out_arguments
from benchmarks import parse_args_keeping_results
from tests.conftest import REPO_ROOT

# quoted_numbers rewrites the docs from results; it writes no result itself.
SCRIPTS = sorted(path for path in (REPO_ROOT / "benchmarks").glob("*.py")
                 if path.stem not in ("__init__", "quoted_numbers"))


def _parser():
    parser = argparse.ArgumentParser()
    add_out_arguments(parser)
    return parser


def test_an_existing_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "result.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        parse_args_keeping_results(_parser(), ["--out", str(out)])
    assert exit_info.value.code == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert parse_args_keeping_results(_parser(), ["--out", str(out), "--overwrite"]).overwrite
    assert parse_args_keeping_results(_parser(), ["--out", str(tmp_path / "new.json")])


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        parse_args_keeping_results(_parser(), [])
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_every_script_parses_with_the_shared_out_arguments(script):
    """No default --out into benchmarks/results/: a reproduction writes where
    it is told, and replaces a file only with --overwrite."""
    source = script.read_text()
    assert "add_out_arguments(" in source and "parse_args_keeping_results(" in source
    assert '"--json"' not in source and "results/" not in source.split('"""')[-1]
