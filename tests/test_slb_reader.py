"""The .slb file read with NumPy alone (mindspore_slb.slb_reader) agrees with load_packed."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mindspore_slb import PackedFileError, load_packed, save_packed
from mindspore_slb.packed_layers import quantized_weights
from mindspore_slb.slb_reader import read_layers
from test_packing import quantized_network
from tiny_nets import REPO_ROOT, ConvBnNet



@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("act_quant", [False, True], ids=["weights", "act_quant"])
def test_reader_gives_the_codes_and_the_weights_load_packed_loads(bits, act_quant, tmp_path):
    _, network, _ = quantized_network(bits, act_quant)
    expected = {weight.path: weight for weight in quantized_weights(network)}
    path = save_packed(network, str(tmp_path / "net.slb"))
    layers, others = read_layers(path)
    loaded = load_packed(ConvBnNet(), path)
    # load_packed puts a layer behind its input quantizer: its parameters are then <path>.layer.<name>
    parameters = {name.replace(".layer.", "."): param.asnumpy() for name, param in loaded.parameters_and_names()}
    assert [layer["path"] for layer in layers] == list(expected)
    for layer in layers:
        weight = expected[layer["path"]]
        assert layer["bits"] == bits and layer["codes"].shape == weight.codes.shape
        np.testing.assert_array_equal(layer["codes"], weight.codes)
        np.testing.assert_array_equal(layer["values"], np.float32(weight.values))
        np.testing.assert_array_equal(layer["scale"], weight.scale)
        assert layer["input_quantizer_bits"] == (8 if act_quant else None)
        np.testing.assert_array_equal(layer["weight"], parameters[f"{layer['path']}.weight"])
    # every other tensor: BatchNorm, biases, the float classifier, the input quantizers' ranges
    assert set(others) == set(parameters) - {f"{layer['path']}.weight" for layer in layers}
    for name, array in others.items():
        np.testing.assert_array_equal(array, parameters[name])
    if act_quant:
        assert "stem.input_quantizer.act_max" in others


def test_command_line_writes_every_array_without_mindspore(tmp_path):
    _, network, _ = quantized_network(2, True)
    path = save_packed(network, str(tmp_path / "net.slb"))
    layers, others = read_layers(path)
    npz = str(tmp_path / "net.npz")
    # importing MindSpore fails in this process: the reader needs NumPy alone
    script = ("import runpy, sys; sys.modules['mindspore'] = None; "
              f"sys.argv = ['slb_reader', {path!r}, '--npz', {npz!r}]; "
              "runpy.run_module('mindspore_slb.slb_reader', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "stem: 2 bits, codes 8x3x3x3" in result.stdout and f"saved {npz}" in result.stdout
    with np.load(npz) as arrays:
        assert set(arrays.files) == ({f"{layer['path']}.{key}" for layer in layers
                                      for key in ("codes", "values", "scale", "weight")} | set(others))
        for layer in layers:
            np.testing.assert_array_equal(arrays[f"{layer['path']}.codes"], layer["codes"])
            np.testing.assert_array_equal(arrays[f"{layer['path']}.weight"], layer["weight"])
        for name, array in others.items():
            np.testing.assert_array_equal(arrays[name], array)


def test_command_line_refuses_a_corrupted_file_in_one_line(tmp_path):
    _, network, _ = quantized_network(1, False)
    path = save_packed(network, str(tmp_path / "net.slb"))
    with open(path, "r+b") as stream:
        stream.seek(-40, os.SEEK_END)
        stream.write(b"\xff")
    result = subprocess.run([sys.executable, "-m", "mindspore_slb.slb_reader", path], capture_output=True,
                            text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: '{path}' fails its checksum: the file is truncated or corrupted."]
    with pytest.raises(PackedFileError, match="fails its checksum"):
        read_layers(path)


def test_copied_out_of_the_package_beside_codes_it_reads_the_file(tmp_path):
    _, network, _ = quantized_network(1, False)
    path = save_packed(network, str(tmp_path / "net.slb"))
    folder = tmp_path / "copied"
    folder.mkdir()
    for module in ("slb_reader.py", "codes.py"):
        (folder / module).write_bytes(open(os.path.join(REPO_ROOT, "mindspore_slb", module), "rb").read())
    # neither MindSpore nor mindspore_slb can be imported there
    script = ("import runpy, sys; sys.modules['mindspore'] = sys.modules['mindspore_slb'] = None; "
              f"sys.argv = ['slb_reader.py', {path!r}]; runpy.run_path('slb_reader.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=folder, check=False)
    assert result.returncode == 0, result.stderr
    assert "stem: 1 bits, codes 8x3x3x3" in result.stdout
