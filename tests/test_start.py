"""SLB's start: at the schedule's first temperature the soft weight is the float weight (times its
scale) as far as the candidates reach, the hard weight is the nearest candidate, and a network with
no BatchNorm to hide a mismatch trains from it."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindspore_slb import QuantDtype, SlbQuantAwareTraining
from mindspore_slb import quantizer
from mindspore_slb.quantizer import (RANDOM_START_SPREAD, START_FLOOR, START_LIMIT, candidate_values, decidedness,
                                     nearest_codes, normalized_weight, random_start_logits, start_logits)
from tiny_nets import DTYPES

# Relative error of the start's soft weight against the float weight (He-initialised 3x3 conv, 16 -> 32
# channels, fitted channel scale; docs/design.md, "A start that computes what the float network
# computes"): set by the weights the candidates cannot reach.
SOFT_ERROR_BOUND = {1: 0.55, 2: 0.25, 4: 0.04}


def quantized_conv(bits, scale, t_start_val=1.0, seed=0):
    weight = np.random.default_rng(seed).normal(0, 0.1, (32, 16, 3, 3)).astype(np.float32)
    conv = nn.Conv2d(16, 32, 3, weight_init=Tensor(weight))
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "enable_weight_scale": scale,
                                  "t_start_val": t_start_val})
    layer = algo.apply(nn.SequentialCell([conv]))[0]
    layer.set_train(True)
    return layer, weight


@pytest.mark.parametrize("t_start_val", [1.0, 4.0])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_start_soft_weight_is_the_float_weight_and_hard_weight_its_nearest_candidate(mode, bits, scale,
                                                                                     t_start_val):
    layer, weight = quantized_conv(bits, scale, t_start_val)
    assert float(layer.weight_quantizer().temperature.asnumpy()[0]) == t_start_val
    normalized, channel_scale = normalized_weight(weight, bits, scale)
    factor = (channel_scale.reshape(-1, 1, 1, 1) if scale else 1.0)
    soft = layer.quantized_weight().asnumpy()
    reachable = np.abs(normalized) <= START_LIMIT
    # Within the candidates' reach the soft weight is the (normalized) float weight itself, but for
    # the few weights near the range's ends whose hard choice holds the soft weight back a little ...
    error = np.abs((soft / factor)[reachable] - normalized[reachable])
    spacing = 2.0 / (2 ** bits - 1)
    assert np.mean(error <= 2e-3) >= 0.98 and error.max() <= 0.03 * spacing
    # ... beyond it, as near as the limit (or, to keep the outermost candidate, its cell) lets it go.
    beyond = ~reachable
    assert np.all((np.abs(soft / factor)[beyond] >= START_LIMIT - 1e-3) & (np.abs(soft / factor)[beyond] < 1.0))
    assert np.all(np.sign(soft[beyond]) == np.sign(weight[beyond]))
    if scale:
        assert np.linalg.norm(soft - weight) / np.linalg.norm(weight) < SOFT_ERROR_BOUND[bits]
    np.testing.assert_array_equal(layer.weight_codes(), nearest_codes(normalized, bits))


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_start_logits_are_not_decided(bits):
    """Every weight keeps a second candidate within reach, so the search can move it."""
    layer, _ = quantized_conv(bits, True)
    logits = layer.weight_logits.asnumpy()
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    if bits == 1:
        assert probabilities.max() <= (1 + START_LIMIT) / 2 + 1e-4
    assert np.sort(probabilities, axis=0)[-2].min() > 1e-3
    # Largest 0, none below START_FLOOR: float32 resolves a learning step's change of every logit.
    assert np.all(logits.max(axis=0) == 0) and logits.min() >= START_FLOOR


@pytest.mark.parametrize("bits", [1, 4])
def test_start_logits_computed_in_pieces_are_those_of_one_pass(bits, monkeypatch):
    """The start is built START_PIECE weights at a time to bound apply's memory: pieces that end inside
    a row of the weight, and one piece for all, give the same logits to the bit (float and random start)."""
    normalized = np.random.default_rng(3).uniform(-1.2, 1.2, (6, 5, 3)).astype(np.float32)
    def both(piece):
        monkeypatch.setattr(quantizer, "START_PIECE", piece)
        return start_logits(normalized, bits), random_start_logits(normalized.shape, bits, np.random.default_rng(4))
    whole_float, whole_random = both(10 ** 6)
    for piece in (7, 90):
        pieced_float, pieced_random = both(piece)
        assert pieced_float.shape == whole_float.shape == (2 ** bits, 6, 5, 3)
        assert np.array_equal(pieced_float, whole_float) and np.array_equal(pieced_random, whole_random)
    # The random start is what one draw of the whole shape gives.
    expected = np.random.default_rng(4).normal(0.0, RANDOM_START_SPREAD, whole_random.shape).astype(np.float32)
    assert np.array_equal(whole_random, expected)


def test_nearest_codes_break_ties_to_the_lower_candidate():
    values = candidate_values(2)
    midpoints = (values[:-1] + values[1:]) / 2
    np.testing.assert_array_equal(nearest_codes(midpoints, 2), [0, 1, 2])
    np.testing.assert_array_equal(nearest_codes(np.array([-5.0, 5.0, 0.0]), 1), [0, 1, 0])


class NoBatchNormNet(nn.Cell):
    """Convs and ReLUs with nothing in between to rescale a shrunken signal (SqueezeNet-like)."""

    def __init__(self):
        super().__init__()
        self.features = nn.SequentialCell([
            nn.Conv2d(3, 16, 3, has_bias=True, weight_init="HeNormal"), nn.ReLU(),
            nn.Conv2d(16, 16, 3, has_bias=True, weight_init="HeNormal"), nn.ReLU(),
            nn.Conv2d(16, 16, 3, has_bias=True, weight_init="HeNormal"), nn.ReLU(),
            nn.Conv2d(16, 4, 1, has_bias=True, weight_init="HeNormal"), nn.ReLU()])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def construct(self, x):
        return self.flatten(self.pool(self.features(x)))


@pytest.mark.parametrize("bits", [1, 4])
def test_network_without_batchnorm_trains_from_the_start(mode, bits):
    from tiny_nets import batches  # pylint: disable=import-outside-toplevel
    ms.set_seed(0)
    network = NoBatchNormNet()
    _, images, labels = batches(num_samples=16, image_size=12, batch_size=16)
    float_output = np.abs(network(images).asnumpy()).mean()
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "epoch_size": 4, "has_trained_epoch": 0})
    algo.apply(network)
    network.set_train(True)
    quantized_output = np.abs(network(images).asnumpy()).mean()
    assert float_output / 10 < quantized_output < float_output * 10

    assert_every_logit_tensor_learns(network, images, labels)


def assert_every_logit_tensor_learns(network, images, labels):
    """Eight Momentum steps: every quantized layer's logits change and the loss falls."""
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(network.trainable_params(), 0.05, 0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(network, loss_fn), optimizer)
    step.set_train(True)
    logits_before = {p.name: p.asnumpy().copy() for p in network.trainable_params() if "weight_logits" in p.name}
    assert len(logits_before) == 4
    targets = Tensor(labels)
    losses = [float(step(images, targets).asnumpy()) for _ in range(8)]
    moved = [name for name, value in logits_before.items()
             if not np.array_equal(value, network.parameters_dict()[name].asnumpy())]
    assert sorted(moved) == sorted(logits_before)
    assert losses[-1] < losses[0]


def test_quantizing_a_trained_network_starts_at_its_accuracy(mode):
    """The Python API's path for a trained network: load it, apply, and the quantized network (hard
    weights, the float network's BatchNorm statistics) already computes nearly what it computed."""
    from tiny_nets import ConvBnNet, batches, train_model  # pylint: disable=import-outside-toplevel
    ms.set_seed(0)
    network = ConvBnNet()
    dataset, images, labels = batches(num_samples=64, batch_size=16)
    train_model(network, dataset).train(6, dataset)
    network.set_train(False)
    float_logits = network(images).asnumpy()
    float_accuracy = np.mean(float_logits.argmax(1) == labels)
    assert float_accuracy > 0.9
    SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT4}).apply(network)
    network.set_train(False)
    quantized_logits = network(images).asnumpy()
    assert np.mean(quantized_logits.argmax(1) == labels) >= float_accuracy - 0.05
    assert np.linalg.norm(quantized_logits - float_logits) / np.linalg.norm(float_logits) < 0.2


def random_start_logits_of(bits, seed, t_start_val=16.0, search_start="random", weight_search="slb"):
    ms.set_seed(seed)
    conv = nn.Conv2d(16, 32, 3)
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "t_start_val": t_start_val, "enable_weight_scale": False,
                                  "search_start": search_start, "weight_search": weight_search})
    layer = algo.apply(nn.SequentialCell([conv]))[0]
    return layer, layer.searched_weight().asnumpy()


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_random_start_is_undecided_and_seeded(mode, bits):
    """search_start "random": T * logits at the first temperature have RANDOM_START_SPREAD's spread,
    every candidate is about equally likely, and a seeded run draws the same logits."""
    layer, logits = random_start_logits_of(bits, seed=5)
    assert logits.shape == (2 ** bits, 32, 16, 3, 3)
    assert abs(16.0 * logits.std() - RANDOM_START_SPREAD) < 0.02 * RANDOM_START_SPREAD
    assert decidedness(logits, 16.0) < 1.0 / 2 ** bits + 0.15
    layer.set_train(True)
    soft = layer.quantized_weight().asnumpy()
    assert np.abs(soft).mean() < 0.2                      # near zero: the candidates average out
    np.testing.assert_array_equal(random_start_logits_of(bits, seed=5)[1], logits)
    assert not np.array_equal(random_start_logits_of(bits, seed=6)[1], logits)


def test_random_start_does_not_compute_the_float_start(monkeypatch):
    """The random start is drawn when the layer is built; the float start, which it replaces, is never
    computed (on a large network it took half of apply's time). Its scale is still fitted to the weight."""
    monkeypatch.setattr(quantizer, "start_logits", lambda *args: pytest.fail("the float start was computed"))
    ms.set_seed(5)
    weight = np.random.default_rng(0).normal(0, 0.1, (32, 16, 3, 3)).astype(np.float32)
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "search_start": "random", "t_start_val": 16.0})
    layer = algo.apply(nn.SequentialCell([nn.Conv2d(16, 32, 3, weight_init=Tensor(weight))]))[0]
    np.testing.assert_array_equal(layer.searched_weight().asnumpy(),
                                  random_start_logits(weight.shape, 2, np.random.default_rng(5)) / np.float32(16.0))
    np.testing.assert_array_equal(layer.weight_scale.asnumpy(), normalized_weight(weight, 2, True)[1])


def test_random_start_leaves_the_straight_through_baseline_at_the_float_weight():
    _, float_started = random_start_logits_of(2, seed=5, search_start="float", weight_search="ste")
    _, random_started = random_start_logits_of(2, seed=5, search_start="random", weight_search="ste")
    np.testing.assert_array_equal(random_started, float_started)


def test_search_start_is_checked():
    assert SlbQuantAwareTraining().__repr__().count("search_start='float'") == 1
    algo = SlbQuantAwareTraining()
    algo.set_search_start("random")
    assert "search_start='random'" in repr(algo)
    with pytest.raises(ValueError, match=r"'search_start' must be one of 'float', 'random', but got 'zero'"):
        SlbQuantAwareTraining({"search_start": "zero"})
    with pytest.raises(ValueError, match="search_start"):
        algo.set_search_start("uniform")


def test_network_without_batchnorm_trains_from_the_random_start(mode):
    from tiny_nets import batches  # pylint: disable=import-outside-toplevel
    ms.set_seed(0)
    network = NoBatchNormNet()
    _, images, labels = batches(num_samples=16, image_size=12, batch_size=16)
    SlbQuantAwareTraining({"quant_dtype": DTYPES[4], "search_start": "random", "t_start_val": 16.0}).apply(network)
    network.set_train(True)
    assert_every_logit_tensor_learns(network, images, labels)
