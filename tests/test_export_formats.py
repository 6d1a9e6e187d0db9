"""Export formats are one registry in the library: the recipe's file_format choices, export_network
and the errors for a name that is not registered all come from it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore_slb
from mindspore_slb import (ExportFormatError, export_format, export_formats, export_network, register_export_format,
                           unregister_export_format)
from test_packing import quantized_network
from tiny_nets import ConvBnNet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT_IN = ("MINDIR", "MINDIR_PACKED", "SLB", "ONNX", "ONNX_PACKED")


def write_npz(network, _inputs, file_name):
    np.savez(file_name, **{name: param.asnumpy() for name, param in network.parameters_and_names()})


@pytest.fixture(name="npz_format")
def fixture_npz_format():
    register_export_format("NPZ", write_npz, ".npz", description="every parameter in a NumPy archive")
    yield export_format("NPZ")
    unregister_export_format("NPZ")


def test_the_built_in_formats_are_registered_in_order():
    assert tuple(export_formats())[:len(BUILT_IN)] == BUILT_IN
    assert [name for name in BUILT_IN if export_format(name).packed] == ["MINDIR_PACKED", "SLB", "ONNX_PACKED"]
    assert export_format("SLB").ending == ".slb" and export_format("MINDIR_PACKED").ending == "_packed.mindir"


def test_a_registered_format_is_written_by_export_network(npz_format, tmp_path):
    assert export_formats()["NPZ"] is npz_format and npz_format.name == "NPZ"
    network = ConvBnNet()
    path = export_network(network, np.zeros((1, 3, 8, 8), np.float32), str(tmp_path / "net"), "NPZ")
    assert path == str(tmp_path / "net.npz")
    with np.load(path) as arrays:
        assert set(arrays.files) == {name for name, _ in network.parameters_and_names()}


def test_an_unknown_format_names_itself_and_the_registered_ones(npz_format):
    del npz_format
    message = "unknown export format 'TFLITE': registered are " + ", ".join(BUILT_IN) + ", NPZ."
    for call in (lambda: export_format("TFLITE"), lambda: unregister_export_format("TFLITE"),
                 lambda: export_network(ConvBnNet(), (), "net", "TFLITE")):
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message


def test_registration_checks_its_arguments():
    with pytest.raises(TypeError, match="'write' must be callable"):
        register_export_format("BAD", None, ".bad")
    with pytest.raises(TypeError, match="'ending' must be a non-empty str"):
        register_export_format("BAD", write_npz, "")
    assert "BAD" not in export_formats()


def test_onnx_without_the_onnx_package_is_an_export_format_error(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "mindspore_slb.onnx_export", raising=False)
    monkeypatch.setitem(sys.modules, "onnx", None)  # importing onnx fails
    with pytest.raises(ExportFormatError, match=r"ONNX export needs the onnx package .*pip install"):
        export_format("ONNX").write(ConvBnNet(), (), str(tmp_path / "net.onnx"))


def run_recipe_code(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False)


def test_a_format_registered_before_the_recipe_reads_its_config_is_a_file_format_choice():
    code = ("import mindspore_slb\n"
            "mindspore_slb.register_export_format('NPZ', lambda net, inputs, path: None, '.npz', "
            "description='every parameter in a NumPy archive')\n"
            "from slb_recipe import export\n"
            "from slb_recipe.config import OPTIONS, load_config, usage\n"
            "assert load_config(['--file_format', 'NPZ']).file_format == 'NPZ'\n"
            "assert export.EXPORT_FORMATS['NPZ'].ending == '.npz'\n"
            "assert 'NPZ (every parameter in a NumPy archive)' in usage()\n"
            "print(OPTIONS['file_format'].choices)\n")
    done = run_recipe_code(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(BUILT_IN + ("NPZ",))


def test_the_recipe_names_an_unknown_file_format_and_the_choices():
    done = run_recipe_code("from slb_recipe.config import parse_args; parse_args(['--file_format', 'TFLITE'])")
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: config key 'file_format' must be one of " + ", ".join(BUILT_IN)
                                   + ", got 'TFLITE'")


def test_the_top_level_serves_the_registry():
    assert mindspore_slb.register_export_format is register_export_format
    assert "export_network" in mindspore_slb.__all__


def test_a_format_of_ones_own_writes_the_codes_from_the_public_names(tmp_path):
    def write_codes(network, _inputs, file_name):
        np.savez(file_name, **{weight.path: mindspore_slb.pack_codes(weight.codes, weight.bits)
                               for weight in mindspore_slb.quantized_weights(network)})

    register_export_format("CODES", write_codes, ".codes.npz", packed=True)
    try:
        _, network, _ = quantized_network(2, False)
        expected = {weight.path: weight for weight in mindspore_slb.quantized_weights(network)}
        path = export_network(network, (), str(tmp_path / "net"), "CODES")
    finally:
        unregister_export_format("CODES")
    with np.load(path) as arrays:
        assert set(arrays.files) == set(expected)
        for name, weight in expected.items():
            codes = mindspore_slb.unpack_codes(arrays[name], 2, weight.codes.size).reshape(weight.codes.shape)
            np.testing.assert_array_equal(codes, weight.codes)
            np.testing.assert_array_equal(mindspore_slb.decode_weight(codes, weight.values, weight.scale),
                                          weight.layer.hard_weight())
