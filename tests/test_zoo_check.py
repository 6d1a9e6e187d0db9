"""scripts/zoo_check.py on one small mindcv network, when mindcv is installed (it is not a dependency)."""
import importlib.util
import os
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(__file__), os.pardir, "scripts")


@pytest.mark.skipif(importlib.util.find_spec("mindcv") is None, reason="mindcv 0.3.0 is not installed")
def test_zoo_check_passes_squeezenet_with_its_shared_conv(capsys):
    sys.path.insert(0, SCRIPTS)
    try:
        import zoo_check  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(SCRIPTS)
    assert zoo_check.main(["--models", "squeezenet1_1", "--image_size", "32"]) == 0
    out = capsys.readouterr().out
    assert "| squeezenet1_1 | pass |" in out and "passed 1 of 1" in out
