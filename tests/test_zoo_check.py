"""scripts/zoo_check.py on one small mindcv network, when mindcv is installed (it is not a dependency)."""
import importlib.util
import os
import sys

import pytest

from mindspore_slb import registered_layers, unregister_layer

SCRIPTS = os.path.join(os.path.dirname(__file__), os.pardir, "scripts")


needs_mindcv = pytest.mark.skipif(importlib.util.find_spec("mindcv") is None, reason="mindcv 0.3.0 is not installed")


@pytest.fixture(autouse=True)
def forget_the_scripts_layer_types():
    """zoo_check registers a layer type for mindcv's BiT; the tests that run after these must find
    the registry as it was."""
    before = {handler.float_type for handler in registered_layers()}
    yield
    for handler in registered_layers():
        if handler.float_type not in before:
            unregister_layer(handler.float_type)


def import_zoo_check():
    sys.path.insert(0, SCRIPTS)
    try:
        import zoo_check  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(SCRIPTS)
    return zoo_check


@needs_mindcv
def test_zoo_check_passes_squeezenet_with_its_shared_conv(capsys):
    assert import_zoo_check().main(["--models", "squeezenet1_1", "--image_size", "32", "--bits", "2"]) == 0
    out = capsys.readouterr().out
    assert "| squeezenet1_1 | pass |" in out and "passed 1 of 1" in out


@needs_mindcv
def test_zoo_check_fails_a_start_that_shrinks_the_signal(capsys):
    """SqueezeNet has no BatchNorm: at 1 bit the soft weight cannot reach the float weights beyond
    the candidates (about half of them), and its training-mode output shrinks layer by layer."""
    assert import_zoo_check().main(["--models", "squeezenet1_1", "--image_size", "32"]) == 1
    out = capsys.readouterr().out
    assert "failed: squeezenet1_1: ValueError: training-mode output" in out and "more than 10x apart" in out


@needs_mindcv
def test_misspelt_model_name_is_an_error_not_a_skip(capsys):
    with pytest.raises(SystemExit) as raised:
        import_zoo_check().main(["--models", "resnet19", "squeezenet1_1"])
    assert raised.value.code == 2
    assert "--models: not a mindcv 0.3.0 model: resnet19 (did you mean resnet18" in capsys.readouterr().err
