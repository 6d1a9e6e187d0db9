"""Mixed precision: SLB networks train under to_float(float16) and AMP O2 / O3, on the fused
kernel (which computes in float32) and on the plain-ops path alike."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, amp, nn

from mindspore_slb import QuantDtype, SlbQuantAwareTraining
from tiny_nets import ConvBnNet

LEVELS = ("O0", "O2", "O3", "to_float16")


def first_losses(level, bits, steps=3):
    """Losses of a few training steps of a quantized ConvBnNet at an AMP level, the quantized
    network and its logits before training."""
    ms.set_seed(0)
    algo = SlbQuantAwareTraining({"quant_dtype": {1: QuantDtype.INT1, 2: QuantDtype.INT2}[bits]})
    net = algo.apply(ConvBnNet())
    logits_before = [(p, p.asnumpy().copy()) for p in net.trainable_params() if "weight_logits" in p.name]
    if level == "to_float16":
        net.to_float(ms.float16)
    else:
        net = amp.auto_mixed_precision(net, level)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.Momentum(net.trainable_params(), 0.05, 0.9))
    step.set_train(True)
    rng = np.random.default_rng(0)
    images = Tensor(rng.normal(size=(4, 3, 8, 8)).astype(np.float32))
    labels = Tensor(np.array([0, 1, 2, 3], np.int32))
    losses = [float(step(images, labels).asnumpy()) for _ in range(steps)]
    return losses, net, logits_before


def quantizers(net):
    return [cell.weight_quantizer() for _, cell in net.cells_and_names() if hasattr(cell, "weight_quantizer")]


@pytest.mark.parametrize("level", LEVELS)
def test_fused_kernel_trains_under_mixed_precision(mode, level):
    losses, net, logits_before = first_losses(level, bits=2)
    assert all(quantizer.weight_is_fused for quantizer in quantizers(net))
    assert np.all(np.isfinite(losses))
    assert len(logits_before) == 3
    for logits, before in logits_before:
        assert not np.array_equal(logits.asnumpy(), before), f"{logits.name} did not learn"


@pytest.mark.parametrize("bits", [1, 2])
def test_fused_and_plain_paths_agree_in_float16(mode, bits, monkeypatch):
    fused, _, _ = first_losses("O3", bits)
    monkeypatch.setenv("MINDSPORE_SLB_NATIVE", "0")
    plain, net, _ = first_losses("O3", bits)
    assert not any(quantizer.weight_is_fused for quantizer in quantizers(net))
    # float16 activations: agreement to float16's precision, not float32's.
    np.testing.assert_allclose(fused, plain, rtol=2e-2, atol=2e-2)


def test_network_made_float16_before_apply_trains(mode):
    """apply's quantized layers run at the precision of the layers they replace, as convert's do."""
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2})
    net = algo.apply(ConvBnNet().to_float(ms.float16))
    assert all(cell.get_flags().get("fp16") for cell in (net.stem, net.stem.weight_quantizer()))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.Momentum(net.trainable_params(), 0.05, 0.9))
    step.set_train(True)
    images = Tensor(np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32))
    labels = Tensor(np.array([0, 1, 2, 3], np.int32))
    assert np.all(np.isfinite([float(step(images, labels).asnumpy()) for _ in range(2)]))


@pytest.mark.parametrize("act_quant", [False, True], ids=["weights", "weights+act"])
@pytest.mark.parametrize("level", LEVELS)
def test_converted_network_keeps_the_precision_and_exports(mode, level, act_quant, tmp_path):
    """The plain layers convert puts in run at the precision of the layers they replace: a float16
    input must not meet a float32 weight (MindSpore's precision is a flag on each Cell)."""
    ms.set_seed(0)
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "enable_act_quant": act_quant})
    net = algo.apply(ConvBnNet())
    net = net.to_float(ms.float16) if level == "to_float16" else amp.auto_mixed_precision(net, level)
    images = Tensor(np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32))
    net.set_train(True)
    net(images)  # observe activation ranges
    net.set_train(False)
    expected = net(images).asnumpy()
    deployed = algo.convert(net)
    # float32 (O0): the same output; float16: the same to float16's precision (the two graphs order
    # their float16 operations differently).
    atol = 0 if level == "O0" else 2e-3 * np.abs(expected).max()
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, rtol=0, atol=atol)
    ms.export(deployed, images, file_name=str(tmp_path / "net"), file_format="MINDIR")
    reloaded = nn.GraphCell(ms.load(str(tmp_path / "net.mindir")))(images).asnumpy()
    np.testing.assert_allclose(reloaded, expected, rtol=0, atol=max(atol, 1e-5 * np.abs(expected).max()))


def test_layer_built_in_float16_keeps_float16(mode):
    """A conv built with dtype=float16 (no to_float flag) computes in float16 after apply and convert."""
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2})
    layer = algo.apply(nn.Conv2d(3, 4, 3, dtype=ms.float16))
    images = Tensor(np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float16))
    for training in (True, False):
        layer.set_train(training)
        assert layer(images).dtype == ms.float16
    expected = layer(images).asnumpy()
    deployed = algo.convert(layer)
    output = deployed(images)
    assert output.dtype == ms.float16
    np.testing.assert_allclose(output.asnumpy(), expected, rtol=1e-3, atol=1e-3)
