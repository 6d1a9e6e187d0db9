"""Bit-packed deployment: the packed file and the MINDIR that unpacks in its graph reproduce convert()."""
import hashlib
import os
import struct
import subprocess
import sys
import textwrap

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

from mindspore_slb import WEIGHT_DTYPES as DTYPES, PackedFileError, load_packed, packed_network, save_packed
from mindspore_slb.codes import decode_weight, pack_codes, unpack_codes
from mindspore_slb.packed_layers import QuantizedWeight, UnpackWeight
from mindspore_slb.packing import size_rows, write_packed
from mindspore_slb.slb_reader import FORMAT_VERSION, MAGIC, read_packed
from tiny_nets import REPO_ROOT, ConvBnNet, batches, randomly_searched



def quantized_network(bits, act_quant, seed=0):
    """A quantized ConvBnNet with random logits (every candidate in use) and observed activation
    ranges; the same network for the same arguments."""
    return randomly_searched(ConvBnNet, {"quant_dtype": DTYPES[bits], "enable_act_quant": act_quant}, seed)


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (7, 3), (13,)], ids=["conv", "dense", "odd"])
def test_codes_round_trip_in_exactly_bits_per_code(bits, shape, rng):
    codes = rng.integers(0, 2 ** bits, size=shape)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-codes.size * bits // 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits, codes.size).reshape(shape), codes)


def test_code_layout_is_lowest_bits_first():
    np.testing.assert_array_equal(pack_codes(np.array([1, 0, 3, 2, 1]), 2), [0b10110001, 0b00000001])
    np.testing.assert_array_equal(pack_codes(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1]), 1), [0b10000001, 1])


def test_decode_weight_scales_each_output_channel():
    codes = np.array([[0, 1], [1, 1], [0, 0]])
    scale = np.array([1.0, 2.0, 0.5], np.float32)
    np.testing.assert_array_equal(decode_weight(codes, (-1.0, 1.0), scale), [[-1, 1], [2, 2], [-0.5, -0.5]])
    assert decode_weight(codes, (-1.0, 1.0), None).dtype == np.float32


def converted_output(bits, act_quant, seed=0):
    """What the converted network computes on the test images (convert works in place, so on a
    network of its own)."""
    algo, network, images = quantized_network(bits, act_quant, seed)
    return algo.convert(network)(images).asnumpy()


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("shape, with_scale", [((6, 2, 3, 3), True), ((5, 7), True), ((3, 5), False)],
                         ids=["conv-scaled", "dense-scaled", "odd"])
def test_in_graph_unpacking_equals_numpy_decoding(bits, shape, with_scale, rng):
    codes = rng.integers(0, 2 ** bits, size=shape)
    values = tuple(float(value) for value in np.linspace(-1, 1, 2 ** bits).astype(np.float32))
    scale = rng.uniform(0.5, 2.0, shape[0]).astype(np.float32) if with_scale else None
    layer = QuantizedWeight("layer", bits, codes, values, scale, None, (), None)
    np.testing.assert_array_equal(UnpackWeight(layer)().asnumpy(), decode_weight(codes, values, scale))


def test_per_channel_scale_is_stored_and_applied(tmp_path):
    _, network, images = quantized_network(2, False)
    scale = np.linspace(0.5, 2.0, 8).astype(np.float32)
    network.stem.weight_scale = Parameter(Tensor(scale), name="stem.weight_scale")
    hard = network.stem.weight_quantizer().hard_weight(network.stem.weight_logits).asnumpy()
    assert "stem.weight_scale" not in [row["name"] for row in size_rows(network)]
    loaded = load_packed(ConvBnNet(), save_packed(network, str(tmp_path / "net.slb")))
    np.testing.assert_array_equal(loaded.stem.weight.asnumpy(), scale[:, None, None, None] * hard)
    compressed = packed_network(network)
    np.testing.assert_array_equal(compressed.stem.unpack().asnumpy(), scale[:, None, None, None] * hard)
    np.testing.assert_array_equal(compressed(images).asnumpy(), loaded(images).asnumpy())


def test_packing_rejects_bad_inputs():
    with pytest.raises(ValueError, match="'bits' must be one of .*got 3"):
        pack_codes(np.zeros(4, int), 3)
    with pytest.raises(ValueError, match=r"'codes' must lie in \[0, 4\)"):
        pack_codes(np.array([0, 4]), 2)
    with pytest.raises(ValueError, match="'packed' must hold 2 bytes"):
        unpack_codes(np.zeros(3, np.uint8), 4, 4)


@pytest.mark.parametrize("act_quant", [False, True], ids=["weights", "weights+act"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_round_trip_equals_converted_network(mode, bits, act_quant, tmp_path):
    expected = converted_output(bits, act_quant)
    _, network, images = quantized_network(bits, act_quant)

    path = save_packed(network, str(tmp_path / "net.slb"))
    user_network = ConvBnNet()
    user_network.set_train(False)
    user_network(images).asnumpy()   # compiled before loading: the loaded network must not reuse that graph
    loaded = load_packed(user_network, path)
    assert loaded is user_network
    np.testing.assert_array_equal(loaded(images).asnumpy(), expected)
    assert not any("logits" in name or "temperature" in name for name, _ in loaded.parameters_and_names())

    compressed = packed_network(network)
    assert compressed is network
    np.testing.assert_array_equal(compressed(images).asnumpy(), expected)
    ms.export(compressed, images, file_name=str(tmp_path / "packed"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "packed.mindir")))
    np.testing.assert_allclose(graph(images).asnumpy(), expected, atol=1e-5, rtol=0)
    # Only the codes, the values and the float parameters travel: far below float32 weights.
    float_weights = sum(4 * int(np.prod(p.shape)) for p in ConvBnNet().get_parameters())
    assert os.path.getsize(tmp_path / "packed.mindir") < float_weights + 64 * 1024


def test_file_stores_each_weight_in_its_bits(tmp_path):
    _, network, _ = quantized_network(1, False)
    rows = size_rows(network)
    weights = [row for row in rows if row["bits"] == 1]
    assert [row["name"] for row in weights] == ["stem.weight", "body.0.weight", "heads.0.weight"]
    for row in weights:
        # codes at 1 bit, the 2 candidate values, the per-output-channel scale (on by default), in bytes
        assert row["stored_bytes"] == -(-row["params"] // 8) + 2 * 4 + 4 * row["shape"][0]
        assert row["float_bytes"] == 4 * row["params"]
    assert all(row["stored_bytes"] == row["float_bytes"] for row in rows if row["bits"] == 32)
    assert not any("logits" in row["name"] or "temperature" in row["name"] for row in rows)
    path = save_packed(network, str(tmp_path / "net.slb"))
    payload = sum(row["stored_bytes"] for row in rows)
    assert payload < os.path.getsize(path) < payload + 4096
    assert sum(row["stored_bytes"] for row in size_rows(network, packed=False)) == \
        sum(row["float_bytes"] for row in rows)


def test_compressed_mindir_runs_without_mindspore_slb(tmp_path):
    expected = converted_output(2, True)
    _, network, images = quantized_network(2, True)
    ms.export(packed_network(network), images, file_name=str(tmp_path / "packed"), file_format="MINDIR")
    np.save(tmp_path / "images.npy", images.asnumpy())
    script = textwrap.dedent(f"""
        import os, sys
        sys.path = [p for p in sys.path if os.path.abspath(p or '.') != {REPO_ROOT!r}]
        sys.modules['mindspore_slb'] = None   # any import of it fails
        import numpy as np, mindspore as ms
        graph = ms.nn.GraphCell(ms.load('packed.mindir'))
        np.save('out.npy', graph(ms.Tensor(np.load('images.npy'))).asnumpy())
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5, rtol=0)


@pytest.fixture(name="packed_file")
def fixture_packed_file(tmp_path):
    _, network, _ = quantized_network(2, True)
    return save_packed(network, str(tmp_path / "net.slb"))


def rewrite(path, content):
    with open(path, "wb") as stream:
        stream.write(content)


def test_truncated_or_corrupted_file_is_an_error(packed_file):
    content = open(packed_file, "rb").read()
    rewrite(packed_file, content[:len(content) // 2])
    with pytest.raises(PackedFileError, match="checksum.*truncated or corrupted"):
        load_packed(ConvBnNet(), packed_file)
    rewrite(packed_file, content[:10])
    with pytest.raises(PackedFileError, match="not an SLB packed file, or is truncated"):
        load_packed(ConvBnNet(), packed_file)
    corrupted = bytearray(content)
    corrupted[len(content) // 2] ^= 0x10
    rewrite(packed_file, bytes(corrupted))
    with pytest.raises(PackedFileError, match="checksum"):
        load_packed(ConvBnNet(), packed_file)
    rewrite(packed_file, b"PK\x03\x04" + content[4:])
    with pytest.raises(PackedFileError, match="not an SLB packed file"):
        load_packed(ConvBnNet(), packed_file)


def test_other_format_version_is_an_error(packed_file):
    content = open(packed_file, "rb").read()
    body = bytearray(content[:-32])
    struct.pack_into("<I", body, len(MAGIC), FORMAT_VERSION + 1)
    rewrite(packed_file, bytes(body) + hashlib.sha256(body).digest())
    with pytest.raises(PackedFileError, match=f"version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION} only"):
        load_packed(ConvBnNet(), packed_file)


def test_mismatched_network_is_an_error_and_left_unchanged(packed_file):
    narrow = ConvBnNet(width=4)
    before = {name: param.asnumpy().copy() for name, param in narrow.parameters_and_names()}
    with pytest.raises(ValueError, match=r"layer 'stem'.*shape \(4, 3, 3, 3\), the file's \(8, 3, 3, 3\)"):
        load_packed(narrow, packed_file)
    for name, param in narrow.parameters_and_names():
        np.testing.assert_array_equal(param.asnumpy(), before[name])
    with pytest.raises(ValueError, match=r"'fc.weight'.*network's shape is \(3, 8\), the file's \(4, 8\)"):
        load_packed(ConvBnNet(num_classes=3), packed_file)
    renamed = ConvBnNet()
    renamed.trunk = renamed.body
    del renamed.body
    with pytest.raises(ValueError, match=r"no layer with a weight at 'body.0'.*\(8, 8, 3, 3\)"):
        load_packed(renamed, packed_file)


def test_bad_arguments_name_the_parameter(tmp_path, packed_file):
    with pytest.raises(TypeError, match="'network' must be a mindspore.nn.Cell"):
        load_packed("net", packed_file)
    with pytest.raises(ValueError, match="'file_name' must be an existing packed file.*missing.slb"):
        load_packed(ConvBnNet(), str(tmp_path / "missing.slb"))
    with pytest.raises(ValueError, match="'network' .*has no quantized layer"):
        save_packed(ConvBnNet(), str(tmp_path / "float.slb"))
    with pytest.raises(ValueError, match="'network' .*has no quantized layer"):
        packed_network(ConvBnNet())
    _, network, _ = quantized_network(1, False)
    with pytest.raises(TypeError, match="'file_name' must be a non-empty str"):
        save_packed(network, 3)


def test_a_packed_network_is_not_packed_saved_or_converted_again(tmp_path):
    algo, network, images = quantized_network(2, act_quant=False)
    expected = packed_network(network)(images).asnumpy()
    # The packed layers keep their quantized layers inside; none of these may reach them.
    for again in (lambda: packed_network(network), lambda: save_packed(network, str(tmp_path / "x.slb")),
                  lambda: size_rows(network)):
        with pytest.raises(ValueError, match=r"'network' is already packed \(a PackedLayer at 'stem'\)"):
            again()
    with pytest.raises(ValueError, match=r"'net_opt' is already packed"):
        algo.convert(network)
    assert not os.path.exists(tmp_path / "x.slb")
    assert np.array_equal(network(images).asnumpy(), expected)


def rewritten(packed_file, edit):
    """The packed file rewritten, with a valid checksum, after edit(header layers, tensors) changed them."""
    header, tensors = read_packed(packed_file)
    edit(header["layers"], tensors)
    return write_packed(packed_file, header["layers"], tensors)


def test_paths_may_be_path_objects(tmp_path):
    algo, network, images = quantized_network(1, act_quant=False)
    path = save_packed(network, tmp_path / "net.slb")
    expected = algo.convert(network)(images).asnumpy()
    assert os.fspath(path) == str(tmp_path / "net.slb")
    np.testing.assert_array_equal(load_packed(ConvBnNet(), tmp_path / "net.slb")(images).asnumpy(), expected)


@pytest.mark.parametrize("key", ["path", "shape", "bits", "input_quantizer_bits"])
def test_header_layer_lacking_a_key_is_a_packed_file_error(packed_file, key):
    rewritten(packed_file, lambda layers, _: layers[0].pop(key))
    with pytest.raises(PackedFileError, match=f"malformed header: layer 0 lacks '{key}'"):
        load_packed(ConvBnNet(), packed_file)


def test_header_layer_with_a_wrong_value_is_a_packed_file_error(packed_file):
    rewritten(packed_file, lambda layers, _: layers[0].update(bits=3))
    with pytest.raises(PackedFileError, match=r"malformed header: layer 0 has 'bits' 3, not one of \(1, 2, 4\)"):
        load_packed(ConvBnNet(), packed_file)


def test_stored_scale_of_the_wrong_shape_is_refused_and_nothing_loaded(packed_file):
    def one_scale_for_all_channels(_, tensors):
        tensors["stem.weight_scale"] = tensors["stem.weight_scale"][:1]

    rewritten(packed_file, one_scale_for_all_channels)
    network = ConvBnNet()
    before = network.stem.weight.asnumpy().copy()
    with pytest.raises(PackedFileError, match=r"at layer 'stem': weight_scale has shape \(1,\), the weight's 8 "
                                              r"output channels need \(8,\)"):
        load_packed(network, packed_file)
    np.testing.assert_array_equal(network.stem.weight.asnumpy(), before)
