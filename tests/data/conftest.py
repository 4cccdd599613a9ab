"""The mvs2v-data tests' fixture (``data_cli``); their helpers are in data_helpers.py (a unique module name)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_helpers, data_face_pack


@pytest.fixture
def data_cli(capsys):
    """``data_cli(args...) -> (rc, stdout, stderr)``: mvs2v-data in this process, without progress bars."""
    from mvs2v_data.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        rc = main([*map(str, args), "--no-progress"])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
