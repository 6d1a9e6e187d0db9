"""ONNX export: the converted network with float32 weights, and with packed codes rebuilt in the graph,
both equal to the converted network in plain onnxruntime."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime
import pytest
from mindspore import ops
from onnx import numpy_helper

from mindspore_slb import WEIGHT_DTYPES as DTYPES, OnnxExportError, QuantDtype, save_onnx
from mindspore_slb.packed_layers import quantized_weights
from test_zoo_check import import_zoo_check, needs_mindcv
from tiny_nets import REPO_ROOT, ConvBnNet, randomly_searched



class MeanPoolNet(ConvBnNet):
    """ConvBnNet pooled by a mean, which MindSpore exports to ONNX (its AdaptiveAvgPool2d it cannot)."""

    def construct(self, x):
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.body(x)
        x = self.relu(self.heads[1](self.heads[0](x)))
        return self.fc(self.flatten(ops.mean(x, axis=(2, 3), keep_dims=True)))


def quantized(bits, seed=0, network_type=MeanPoolNet, **config):
    """A quantized network of width 5 (no layer's codes fill their last byte) with random logits and
    observed ranges, and a batch of images."""
    _, network, images = randomly_searched(lambda: network_type(width=5), {"quant_dtype": DTYPES[bits], **config},
                                           seed)
    return network, images


def run_onnx(path, images, optimize=True):
    """The file's output in onnxruntime; ``optimize=False``: no constant folding, so a packed file
    rebuilds its weights on the call."""
    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.asnumpy()})[0]


def float_initializers(path):
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(path).graph.initializer
            if tensor.data_type == onnx.TensorProto.FLOAT}


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("weight_scale", [True, False], ids=["scale", "no_scale"])
@pytest.mark.parametrize("packed", [False, True], ids=["float", "packed"])
def test_onnx_equals_the_converted_network(bits, weight_scale, packed, tmp_path):
    network, images = quantized(bits, enable_weight_scale=weight_scale)
    layers = quantized_weights(network)
    assert (layers[0].scale is not None) == weight_scale
    path = save_onnx(network, images, str(tmp_path / "net.onnx"), packed=packed)
    # save_onnx converted the network in place: it is now the converted network
    expected = network(images).asnumpy()
    np.testing.assert_allclose(run_onnx(path, images), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(run_onnx(path, images, optimize=False), expected, atol=1e-5, rtol=0)
    weights = [array for name, array in float_initializers(path).items() if name.endswith("weight")]
    assert len(weights) == (1 if packed else 4)  # the float classifier alone is left, or all four
    if packed:
        model = onnx.load(path)
        codes = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer
                 if tensor.name.endswith("_codes")}
        assert sorted(codes) == ["body.0.weight_codes", "heads.0.weight_codes", "stem.weight_codes"]
        for layer in layers:
            packed_codes = codes[f"{layer.path}.weight_codes"]
            assert packed_codes.dtype == np.uint8 and packed_codes.size == -(-layer.codes.size * bits // 8)
        assert {node.domain for node in model.graph.node} == {""}  # standard operators only


def test_packed_onnx_with_an_excluded_layer_input_quantizers_and_the_dense_layer(tmp_path):
    network, images = quantized(2, enable_act_quant=True, enable_dense_quant=True, exclude_layers=["body.0"])
    assert [layer.path for layer in quantized_weights(network)] == ["stem", "heads.0", "fc"]
    excluded = network.body[0].weight.asnumpy()
    path = save_onnx(network, images, str(tmp_path / "net.onnx"))
    np.testing.assert_allclose(run_onnx(path, images), network(images).asnumpy(), atol=1e-5, rtol=0)
    floats = float_initializers(path)
    assert [name for name in floats if name.endswith("weight")] == ["body.0.weight"]
    np.testing.assert_array_equal(floats["body.0.weight"], excluded)


def test_packed_onnx_runs_without_mindspore(tmp_path):
    network, images = quantized(1)
    path = save_onnx(network, images, str(tmp_path / "net.onnx"))
    np.save(tmp_path / "images.npy", images.asnumpy())
    np.save(tmp_path / "expected.npy", network(images).asnumpy())
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mindspore"] = sys.modules["mindspore_slb"] = None  # importing either fails
        import numpy as np
        import onnxruntime
        session = onnxruntime.InferenceSession({path!r})
        output = session.run(None, {{session.get_inputs()[0].name: np.load({str(tmp_path / 'images.npy')!r})}})[0]
        np.testing.assert_allclose(output, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-5, rtol=0)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_an_operator_mindspore_cannot_export_is_named_in_one_line(tmp_path):
    network, images = quantized(2, network_type=ConvBnNet)  # pooled by AdaptiveAvgPool2d
    with pytest.raises(OnnxExportError) as raised:
        save_onnx(network, images, str(tmp_path / "net.onnx"))
    assert str(raised.value) == ("MindSpore cannot export ConvBnNet to ONNX: it does not support the operator "
                                 "AdaptiveAvgPool2D.")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert not os.path.exists(tmp_path / "net.onnx")


@needs_mindcv
def test_mindcv_resnet18_names_the_operator_mindspore_cannot_export(tmp_path):
    models = import_zoo_check().import_mindcv().models
    _, network, images = randomly_searched(lambda: models.create_model("resnet18", num_classes=4),
                                           {"quant_dtype": QuantDtype.INT1})
    with pytest.raises(OnnxExportError, match=r"^MindSpore cannot export ResNet to ONNX: it does not support the "
                                              r"operator InplaceAddExt\.$"):
        save_onnx(network, images[:1], str(tmp_path / "net.onnx"))
