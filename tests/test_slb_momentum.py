"""SlbMomentum: the logits' Momentum step fused into the backward kernel trains the same weights as
nn.Momentum, leaves every other parameter to nn.Momentum, and refuses what it cannot do."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from mindspore_slb import SlbMomentum, SlbQuantAwareTraining
from mindspore_slb.optimizer import fused_logits
from tiny_nets import DTYPES, ConvBnNet, batches

LOSS_SCALE = 128.0


def network(bits, weight_scale, seed=0):
    ms.set_seed(seed)
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "enable_weight_scale": weight_scale,
                                  "search_start": "random", "t_start_val": 4.0})
    net = algo.apply(ConvBnNet())
    return net


def train(net, optimizer_type, steps, hard_from=None, **optimizer_args):
    """``steps`` steps of TrainOneStepCell with a fixed loss scale (the recipe's); from step
    ``hard_from`` on the search is hard. Returns every Parameter by name."""
    loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    lrs = [0.05, 0.03, 0.02, 0.01, 0.005, 0.002]
    optimizer = optimizer_type(net.trainable_params(), lrs, 0.9, weight_decay=1e-3, loss_scale=LOSS_SCALE,
                               **optimizer_args)
    step = nn.TrainOneStepCell(loss, optimizer, sens=LOSS_SCALE)
    step.set_train(True)
    _, images, labels = batches(num_samples=16)
    for index in range(steps):
        if index == hard_from:
            for cell in net.cells_and_names():
                if hasattr(cell[1], "set_temperature_end_flag"):
                    cell[1].set_temperature_end_flag(True)
        step(images, Tensor(labels))
    return {param.name: param.asnumpy().copy() for param in optimizer.parameters}, optimizer


@pytest.mark.parametrize("bits, weight_scale", [(1, False), (2, True), (4, False)])
def test_same_weights_as_nn_momentum(mode, bits, weight_scale):
    expected, _ = train(network(bits, weight_scale), nn.Momentum, steps=4)
    fused, optimizer = train(network(bits, weight_scale), SlbMomentum, steps=4)
    logits = [name for name in expected if name.endswith("weight_logits")]
    assert len(logits) == 3 and len(fused_logits(optimizer.parameters)) == 3
    assert expected.keys() == fused.keys()
    assert_same_training(expected, fused, network(bits, weight_scale))


def assert_same_training(expected, fused, start_network):
    """Every Parameter trained (the logits by far more than the tolerance) and to the same values."""
    start = {param.name: param.asnumpy() for param in start_network.get_parameters()}
    for name, value in expected.items():
        moved = np.abs(value - start[name]).max()
        assert moved > (1e-3 if name.endswith("weight_logits") else 0), f"{name} moved {moved}"
        np.testing.assert_allclose(fused[name], value, rtol=2e-4, atol=2e-6, err_msg=name)


def test_hard_phase_as_nn_momentum(mode):
    """Hard weights give the logits no gradient, but nn.Momentum still decays them and carries momentum."""
    expected, _ = train(network(2, True), nn.Momentum, steps=4, hard_from=2)
    fused, _ = train(network(2, True), SlbMomentum, steps=4, hard_from=2)
    assert_same_training(expected, fused, network(2, True))


def test_momentum_named_as_nn_momentum():
    net = network(2, False)
    names = {param.name for param in SlbMomentum(net.trainable_params(), 0.1, 0.9).get_parameters()}
    plain = {param.name for param in nn.Momentum(net.trainable_params(), 0.1, 0.9).get_parameters()}
    assert names == plain


def test_group_weight_decay_as_nn_momentum():
    def groups(net):
        logits = [param for param in net.trainable_params() if param.name.endswith("weight_logits")]
        rest = [param for param in net.trainable_params() if not param.name.endswith("weight_logits")]
        return [{"params": logits, "weight_decay": 5e-3}, {"params": rest, "weight_decay": 1e-3},
                {"order_params": net.trainable_params()}]

    results = []
    for optimizer_type in (nn.Momentum, SlbMomentum):
        net = network(1, False)
        loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
        step = nn.TrainOneStepCell(loss, optimizer_type(groups(net), 0.05, 0.9))
        step.set_train(True)
        _, images, labels = batches(num_samples=16)
        for _ in range(3):
            step(images, Tensor(labels))
        results.append({param.name: param.asnumpy() for param in net.trainable_params()})
    assert_same_training(results[0], results[1], network(1, False))


def test_refusals():
    net = network(1, False)
    logits = [param for param in net.trainable_params() if param.name.endswith("weight_logits")]
    rest = [param for param in net.trainable_params() if not param.name.endswith("weight_logits")]
    with pytest.raises(ValueError, match="besides the SLB logits"):
        SlbMomentum(logits, 0.1, 0.9)
    with pytest.raises(ValueError, match="use_nesterov"):
        SlbMomentum(net.trainable_params(), 0.1, 0.9, use_nesterov=True)
    with pytest.raises(ValueError, match="PolynomialDecayLR"):
        SlbMomentum(net.trainable_params(), nn.PolynomialDecayLR(0.1, 0.01, 10, 1.0), 0.9)
    with pytest.raises(ValueError, match="own 'lr'"):
        SlbMomentum([{"params": logits, "lr": 0.1}, {"params": rest, "lr": 0.2}], 0.1, 0.9)
    ms.set_auto_parallel_context(parallel_mode="data_parallel")
    try:
        with pytest.raises(ValueError, match="data_parallel"):
            SlbMomentum(net.trainable_params(), 0.1, 0.9)
    finally:
        ms.reset_auto_parallel_context()


def test_plain_parameters_alone_are_nn_momentum():
    """Without SLB logits (a float network, or the straight-through baseline) it is nn.Momentum."""
    ms.set_seed(0)
    net = ConvBnNet()
    optimizer = SlbMomentum(net.trainable_params(), 0.1, 0.9)
    assert fused_logits(optimizer.parameters) == []
    assert len(optimizer.parameters) == len(net.trainable_params())


def test_float16_logits_are_refused_by_name(mode):
    """Mixed precision casts the logits before the kernel: the step would go to the copy."""
    net = network(2, False)
    net.to_float(ms.float16)
    loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(loss, SlbMomentum(net.trainable_params(), 0.05, 0.9))
    step.set_train(True)
    _, images, labels = batches(num_samples=8)
    with pytest.raises(TypeError, match="logits and momentum, but got Float16 and Float16"):
        step(images, Tensor(labels))


def bfloat16_network(bits, weight_scale, seed=0):
    ms.set_seed(seed)
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "enable_weight_scale": weight_scale,
                                  "search_start": "random", "t_start_val": 4.0, "search_dtype": "bfloat16"})
    return algo, algo.apply(ConvBnNet())


@pytest.mark.parametrize("bits, weight_scale", [(1, True), (4, False)])
def test_bfloat16_search_state_trains_as_float32_does(mode, bits, weight_scale):
    """The logits and their momentum in bfloat16: half the bytes, the same training to bfloat16's
    resolution (the step's arithmetic is float32's)."""
    _, net = bfloat16_network(bits, weight_scale)
    logits = [param for param in net.trainable_params() if param.name.endswith("weight_logits")]
    assert logits and all(param.dtype == ms.bfloat16 for param in logits)
    half, optimizer = train(net, SlbMomentum, steps=4)
    assert all(moment.dtype == ms.bfloat16 for moment in optimizer.logit_moments)
    full, _ = train(network(bits, weight_scale), SlbMomentum, steps=4)
    for name, value in full.items():
        got = half[name].astype(np.float32)
        if name.endswith("weight_logits"):
            # Rounding to bfloat16 (8 significant bits) at the start and at every step.
            np.testing.assert_allclose(got, value, rtol=0.05, atol=2e-3, err_msg=name)
        else:
            np.testing.assert_allclose(got, value, rtol=0.05, atol=1e-3, err_msg=name)


def test_bfloat16_network_evaluates_and_converts(mode):
    algo, net = bfloat16_network(2, True)
    train(net, SlbMomentum, steps=2)
    _, images, _ = batches(num_samples=8)
    net.set_train(False)
    quantized = net(images).asnumpy()
    deployed = algo.convert(net)(images).asnumpy()
    np.testing.assert_allclose(deployed, quantized, rtol=1e-5, atol=1e-5)


class _UpdatedLogits(nn.Cell):
    """Two-candidate logits [2, size] in bfloat16, all at (0, 1), whose weights sum to the output."""

    def __init__(self, size, learning_rate):
        super().__init__()
        from mindspore_slb import native
        self.update = native.soft_weight_update_op(2)
        start = np.stack([np.zeros(size), np.ones(size)]).astype(np.float32)
        self.logits = ms.Parameter(Tensor(start).astype(ms.bfloat16), name="logits")
        self.moment = ms.Parameter(Tensor(np.zeros_like(start)).astype(ms.bfloat16), name="moment")
        # The optimizer's state as SlbMomentum passes it: no momentum, no decay, no loss scale.
        self.learning_rate = Tensor(learning_rate, ms.float32)
        self.step = ms.Parameter(Tensor([0], ms.int32), name="step", requires_grad=False)
        self.momentum = Tensor(0.0, ms.float32)
        self.layer_values = Tensor([0.0, 1.0], ms.float32)
        self.temperature = Tensor([1e-3], ms.float32)
        self.hard = Tensor([0.0], ms.float32)

    def construct(self):
        return self.update(self.logits, self.temperature, self.hard, self.moment, self.learning_rate, self.step,
                           self.momentum, self.layer_values).sum()


def test_stochastic_rounding_keeps_steps_below_bfloat16_resolution(mode):
    """A step well below the logits' bfloat16 spacing still moves them by the right amount on average
    (rounded to nearest, every one of these steps would be lost)."""
    size, steps = 4096, 10
    cell = _UpdatedLogits(size, learning_rate=1.0)
    step = ms.grad(cell, grad_position=None, weights=cell.logits)
    for index in range(steps):
        ops.assign(cell.step, Tensor([index], ms.int32))
        step()
    moved = cell.logits.asnumpy().astype(np.float64) - np.stack([np.zeros(size), np.ones(size)])
    # The gradient of the summed weight tanh(T (a1 - a0) / 2) is -+T/2 at a1 - a0 = 1 and T = 1e-3:
    # steps of 5e-4, an eighth of the bfloat16 spacing just below 1 (2**-8).
    expected = steps * 1.0 * 1e-3 / 2
    np.testing.assert_allclose(moved[1].mean(), -expected, rtol=0.1)
    np.testing.assert_allclose(moved[0].mean(), expected, rtol=0.1)
    assert len(np.unique(moved[1])) > 1  # rounded up or down, element by element


def test_bfloat16_refusals():
    algo, net = bfloat16_network(1, False)
    dataset, _, _ = batches(num_samples=8)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = ms.Model(net, loss, nn.Momentum(net.trainable_params(), 0.05, 0.9))
    with pytest.raises(TypeError, match="trains with mindspore_slb.SlbMomentum only, but the model's optimizer is "
                                        "Momentum"):
        algo.callbacks(model, dataset)
    with pytest.raises(ValueError, match="search_dtype"):
        SlbQuantAwareTraining({"search_dtype": "float16"})
