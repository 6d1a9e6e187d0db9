"""train -> eval -> export through the scripts' own entry points, in both execution modes."""
import os

import mindspore as ms
import numpy as np
import pytest

from recipe_data import exit_message, shared_data, tiny_args

from slb_recipe import evaluate as evaluation
from slb_recipe import export
from slb_recipe import train
from slb_recipe.config import load_config
from slb_recipe.lr_schedule import get_lr
from slb_recipe.output_folder import LOCK_NAME
from slb_recipe.checkpoints import epoch_reached
from slb_recipe.dataset import create_split
from slb_recipe.network import load_trained_network
from slb_recipe.quant_type import weight_bits
from slb_recipe.runtime import setup_runtime


def expected_temperature(epoch, config):
    """The SLB temperature schedule as docs/configuration.md states it, for the config's keys."""
    start_epoch = int(config.epoch_size * config.t_start_time)
    end_epoch = int(config.epoch_size * config.t_end_time)
    factor = config.t_factor
    if config.t_end_val:
        factor = (config.t_end_val / config.t_start_val) ** (1 / (end_epoch - start_epoch))
    if epoch <= start_epoch:
        return config.t_start_val
    return config.t_start_val * factor ** (min(epoch, end_epoch) - start_epoch)


def check_training_record(result, args, steps_per_epoch):
    config = load_config(args)
    history = result["history"]
    assert [record["epoch"] for record in history] == [1, 2]
    lrs = get_lr(config.lr_init, config.lr_end, config.lr_max, config.warmup_epochs, 2, steps_per_epoch)
    for record in history:
        assert np.isfinite(record["loss"]) and record["epoch_time_s"] > 0
        assert ("eval" in record) == bool(config.eval_interval and record["epoch"] % config.eval_interval == 0)
        assert record["lr"] == pytest.approx(float(lrs[record["epoch"] * steps_per_epoch - 1]))
        if config.quant_type == "W32":
            assert record["temperature"] is None
        else:
            assert record["temperature"] == pytest.approx(expected_temperature(record["epoch"], config))
    checkpoint = result["checkpoint"]
    assert os.path.basename(checkpoint) == f"resnet18_{config.quant_type}-2.ckpt"
    assert epoch_reached(ms.load_checkpoint(checkpoint)) == 2
    kept = sorted(name for name in os.listdir(os.path.dirname(checkpoint)) if name != LOCK_NAME)
    assert kept == [f"resnet18_{config.quant_type}-{epoch}.ckpt" for epoch in (1, 2)]


def check_export_matches_converted_network(args, mindir_path):
    config = load_config(args)
    setup_runtime(config)
    net, algo, _ = load_trained_network(config)
    deploy_net = net if algo is None else algo.convert(net)
    deploy_net.set_train(False)
    images = ms.Tensor(next(create_split(config, False).create_tuple_iterator(output_numpy=True))[0][:1])
    exported = ms.nn.GraphCell(ms.load(mindir_path))
    np.testing.assert_allclose(exported(images).asnumpy(), deploy_net(images).asnumpy(), rtol=1e-4, atol=1e-5)
    if algo is not None:
        # Every conv of the deployable network holds only candidate values, e.g. {-1, +1} for W1.
        weights = np.concatenate([param.asnumpy().ravel() for param in deploy_net.get_parameters()
                                  if param.ndim == 4])
        candidates = np.linspace(-1, 1, 2 ** weight_bits(config.quant_type)).astype(np.float32)
        assert set(np.unique(weights).tolist()) <= set(candidates.tolist())


def run_recipe(args, steps_per_epoch, capsys):
    result = train.main(args)
    check_training_record(result, args, steps_per_epoch)
    printed = capsys.readouterr().out
    assert "epoch 2/2: loss" in printed and "per step" in printed and "lr " in printed

    evaluated = evaluation.main(args)
    printed = capsys.readouterr().out
    assert "top_1_accuracy" in printed and "top_5_accuracy" in printed
    metrics = evaluated["quantized"]
    assert 0.0 <= metrics["top_1_accuracy"] <= metrics["top_5_accuracy"] <= 1.0
    mindir_path = export.main(args)
    assert mindir_path.endswith(".mindir") and os.path.getsize(mindir_path) > 0
    check_export_matches_converted_network(args, mindir_path)
    return result, evaluated


@pytest.mark.parametrize("mode_name", ["GRAPH", "PYNATIVE"])
def test_cifar10_w1_train_eval_export(mode_name, tmp_path, tmp_path_factory, capsys):
    args = tiny_args(tmp_path, dataset="cifar10", data_path=shared_data("cifar10", tmp_path_factory),
                     quant_type="W1", mode_name=mode_name, t_start_time=0.5, t_end_time=1.0,
                     train_image_size=32, eval_image_size=32, eval_num_samples=20, eval_interval=2)
    result, evaluated = run_recipe(args, steps_per_epoch=2, capsys=capsys)
    assert evaluated["converted"] == evaluated["quantized"]
    # Evaluating during training, after the last epoch, sees the network of the last checkpoint.
    assert result["history"][-1]["eval"] == evaluated["quantized"]


@pytest.mark.parametrize("mode_name, quant_type", [("GRAPH", "W2A8"), ("PYNATIVE", "W32")])
def test_image_folder_train_eval_export(mode_name, quant_type, tmp_path, tmp_path_factory, capsys):
    args = tiny_args(tmp_path, dataset="imagenet", data_path=shared_data("imagenet", tmp_path_factory),
                     class_num=3, quant_type=quant_type, mode_name=mode_name, t_start_time=0.5,
                     t_end_time=1.0, train_num_samples=0, eval_num_samples=0)
    _, evaluated = run_recipe(args, steps_per_epoch=1, capsys=capsys)
    if quant_type == "W32":
        assert evaluated["converted"] is None
    else:
        assert evaluated["converted"] == evaluated["quantized"]


def test_fashion_mnist_w2_train_eval_export(tmp_path, tmp_path_factory, capsys):
    args = tiny_args(tmp_path, dataset="fashion_mnist", data_path=shared_data("fashion_mnist", tmp_path_factory),
                     quant_type="W2", mode_name="GRAPH", t_start_time=0.5, t_end_time=1.0)
    _, evaluated = run_recipe(args, steps_per_epoch=2, capsys=capsys)
    assert evaluated["converted"] == evaluated["quantized"]


def test_eval_of_a_checkpoint_from_another_recipe_is_a_one_line_error(tmp_path, capsys):
    args = tiny_args(tmp_path, quant_type="W32", epoch_size=1, warmup_epochs=0)
    checkpoint = train.main(args)["checkpoint"]
    with pytest.raises(SystemExit) as raised:
        evaluation.main(tiny_args(tmp_path, quant_type="W2", checkpoint_file_path=checkpoint))
    message = str(raised.value.code)
    assert "\n" not in message and checkpoint in message and "quant_type" in message
    with pytest.raises(SystemExit, match="no W4 checkpoint"):
        export.main(tiny_args(tmp_path, quant_type="W4"))


def test_eval_fails_when_the_converted_network_disagrees(tmp_path, monkeypatch):
    args = tiny_args(tmp_path, quant_type="W1", epoch_size=1, warmup_epochs=0)
    train.main(args)
    figures = iter([{"top_1_accuracy": 0.5, "top_5_accuracy": 0.9}, {"top_1_accuracy": 0.4, "top_5_accuracy": 0.9}])
    monkeypatch.setattr(evaluation, "evaluate", lambda *_: next(figures))
    with pytest.raises(SystemExit, match="converted network does not reproduce"):
        evaluation.main(args)


def test_checkpoint_record_is_compared_before_loading(tmp_path):
    args = tiny_args(tmp_path, quant_type="W1A8", epoch_size=1, warmup_epochs=0)
    checkpoint = train.main(args)["checkpoint"]
    record = ms.load_checkpoint(checkpoint)
    assert (record["quant_type"], record["dataset"]) == ("W1A8", "digits")
    assert (int(record["width"].asnumpy()), int(record["class_num"].asnumpy())) == (4, 10)
    as_w1 = tiny_args(tmp_path, quant_type="W1", checkpoint_file_path=checkpoint)
    for main in (evaluation.main, export.main):
        assert "was trained with quant_type W1A8, this run has quant_type W1" in exit_message(main, as_w1)
    wider = tiny_args(tmp_path / "resumed", quant_type="W1A8", width=8, epoch_size=2, pre_trained=checkpoint)
    assert f"pre_trained '{checkpoint}' was trained with width 4, this run has width 8" in \
        exit_message(train.main, wider)


def test_checkpoint_without_a_record_that_does_not_fit_is_a_one_line_error(tmp_path):
    checkpoint = train.main(tiny_args(tmp_path, quant_type="W2", epoch_size=1, warmup_epochs=0))["checkpoint"]
    unrecorded = str(tmp_path / "unrecorded.ckpt")
    ms.save_checkpoint([{"name": name, "data": value} for name, value in ms.load_checkpoint(checkpoint).items()
                        if not isinstance(value, str) and name not in ("width", "class_num")], unrecorded)
    message = exit_message(evaluation.main, tiny_args(tmp_path, quant_type="W2", width=8,
                                                      checkpoint_file_path=unrecorded))
    assert "of shape" in message and "another quant_type, width or class_num" in message
    message = exit_message(evaluation.main, tiny_args(tmp_path, quant_type="W2A8", checkpoint_file_path=unrecorded))
    assert "lacks" in message and "parameters of this network" in message


def test_unreadable_checkpoints_are_named_as_such(tmp_path):
    good = tmp_path / "good.ckpt"
    ms.save_checkpoint(ms.nn.Dense(2, 2), str(good))
    for name, content in (("empty", b""), ("cut", good.read_bytes()[:60]),
                          ("noise", np.random.default_rng(0).bytes(4096))):
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(content)
        message = exit_message(evaluation.main, tiny_args(tmp_path, checkpoint_file_path=str(path)))
        assert f"checkpoint_file_path '{path}' is not a readable MindSpore checkpoint" in message
