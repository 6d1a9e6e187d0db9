"""BatchNorm calibration stores the hard network's batch statistics, averaged over the data."""
import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import nn

from mindspore_slb import SlbQuantAwareTraining, calibrate_batchnorm

EPS = 1e-5


def batchnorm_in_training(x, cell):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    gamma = cell.gamma.asnumpy().reshape(1, -1, 1, 1)
    beta = cell.beta.asnumpy().reshape(1, -1, 1, 1)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def unbiased_statistics(x):
    count = x.size // x.shape[1]
    return x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) * count / (count - 1)


def test_calibration_matches_direct_computation(mode, rng):
    network = nn.SequentialCell([nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Conv2d(4, 5, 3, pad_mode="valid"), nn.BatchNorm2d(5)])
    algo = SlbQuantAwareTraining({"epoch_size": 2, "has_trained_epoch": 0})
    algo.apply(network)
    for cell in (network[2], network[5]):
        cell.gamma.set_data(ms.Tensor(rng.uniform(0.5, 2, cell.num_features).astype(np.float32)))
    images = rng.normal(1.0, 2.0, (12, 3, 7, 7)).astype(np.float32)
    dataset = ds.NumpySlicesDataset({"image": images, "label": np.zeros(12, np.int32)}, shuffle=False).batch(4)
    params_before = {p.name: p.asnumpy().copy() for p in network.trainable_params()}
    input_bn_before = network[0].moving_mean.asnumpy().copy(), network[0].moving_variance.asnumpy().copy()

    calibrated = calibrate_batchnorm(network, dataset)

    assert calibrated == ["2", "5"]
    assert not network.training  # the quantized convs below compute with their hard weights
    expected = {2: [], 5: []}
    for start in range(0, 12, 4):
        h = batchnorm_in_training(images[start:start + 4].astype(np.float64), network[0])
        h = network[1](ms.Tensor(h.astype(np.float32))).asnumpy().astype(np.float64)
        expected[2].append(unbiased_statistics(h))
        h = np.maximum(batchnorm_in_training(h, network[2]), 0)
        h = network[4](ms.Tensor(h.astype(np.float32))).asnumpy().astype(np.float64)
        expected[5].append(unbiased_statistics(h))
    for index, statistics in expected.items():
        mean = np.mean([m for m, _ in statistics], axis=0)
        var = np.mean([v for _, v in statistics], axis=0)
        np.testing.assert_allclose(network[index].moving_mean.asnumpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(network[index].moving_variance.asnumpy(), var, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(network[0].moving_mean.asnumpy(), input_bn_before[0])
    np.testing.assert_array_equal(network[0].moving_variance.asnumpy(), input_bn_before[1])
    for p in network.trainable_params():
        np.testing.assert_array_equal(p.asnumpy(), params_before[p.name])
    assert ms.get_context("mode") == mode
    assert not network.training


def test_calibration_runs_from_training_when_enabled(mode):
    from tiny_nets import ConvBnNet, batches, train_model
    algo = SlbQuantAwareTraining({"epoch_size": 2, "has_trained_epoch": 0, "enable_bn_calibration": True,
                                  "t_start_time": 0.5})
    network = algo.apply(ConvBnNet())
    dataset, images, _ = batches(num_samples=8, batch_size=8)
    model = train_model(network, dataset, learning_rate=0.0)
    model.train(2, dataset, callbacks=algo.callbacks(model, dataset))
    # one batch holding all data: the stored statistics are that batch's, under hard weights
    network.set_train(False)
    expected = network.body[1].moving_mean.asnumpy().copy()
    calibrate_batchnorm(network, dataset)
    np.testing.assert_allclose(network.body[1].moving_mean.asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_kept_calibrator_gives_what_a_fresh_calibration_gives(mode, rng):
    """BatchNormCalibrator compiles once and is reused every epoch: each call must still see the
    current weights and data, and a changed network is planned anew."""
    from mindspore_slb import BatchNormCalibrator  # pylint: disable=import-outside-toplevel
    from tiny_nets import ConvBnNet  # pylint: disable=import-outside-toplevel
    network = SlbQuantAwareTraining({"epoch_size": 2, "has_trained_epoch": 0}).apply(ConvBnNet())
    calibrator = BatchNormCalibrator(network)
    for seed in (1, 2):
        images = np.random.default_rng(seed).normal(0, 1, (16, 3, 8, 8)).astype(np.float32)
        dataset = ds.NumpySlicesDataset({"image": images, "label": np.zeros(16, np.int32)}, shuffle=False).batch(4)
        network.body[0].weight_logits.set_data(ms.Tensor(rng.normal(size=network.body[0].weight_logits.shape)
                                                         .astype(np.float32)))
        assert calibrator.calibrate(dataset, 3) == ["stem_bn", "body.1", "heads.1"]
        kept = network.body[1].moving_mean.asnumpy().copy(), network.heads[1].moving_variance.asnumpy().copy()
        calibrate_batchnorm(network, dataset, 3)
        np.testing.assert_allclose(kept[0], network.body[1].moving_mean.asnumpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(kept[1], network.heads[1].moving_variance.asnumpy(), rtol=1e-6, atol=1e-7)
    network.heads[1] = nn.BatchNorm2d(8)
    assert calibrator.calibrate(dataset) == ["stem_bn", "body.1", "heads.1"]
    assert not np.allclose(network.heads[1].moving_mean.asnumpy(), 0)
    with pytest.raises(ValueError, match="'num_batches' must be None or an int >= 1, but got 0"):
        calibrator.calibrate(dataset, 0)
