import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CUHK_DIR = REPO_ROOT.parent / "shared" / "data" / "CUHK"


@pytest.fixture
def cuhk_dir():
    """The CUHK benchmark beside the project; skips the test when absent."""
    if not (CUHK_DIR / "test" / "images").is_dir():
        pytest.skip(f"CUHK data not found at {CUHK_DIR}")
    return CUHK_DIR
