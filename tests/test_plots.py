"""Figures of training and of the sweep: written as valid PNG files, redrawn every epoch, optional;
and the decidedness they draw, against the quantizer's own soft weight."""
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mindspore import Tensor, nn

from recipe_data import PNG_SIGNATURE, tiny_args

from mindspore_slb import SlbFakeQuantizerPerLayer
from mindspore_slb.quantizer import candidate_probabilities, candidate_values, decidedness
from slb_recipe import plots, train
from slb_recipe.callbacks import TrainingPlots

TRAINING_FIGURES = (plots.TRAINING_CURVES, plots.SCHEDULES, plots.SEARCH_DECIDEDNESS)
ALL_TRAINING_FIGURES = TRAINING_FIGURES + (plots.CHOSEN_VALUES,)


def assert_png(path):
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    content = Path(path).read_bytes()
    assert content.startswith(PNG_SIGNATURE) and len(content) > 5000, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0, path


def pngs_in(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".png"))


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_uniform_logits_give_one_over_k_and_separated_logits_give_one(bits):
    candidates = 2 ** bits
    assert decidedness(np.zeros((candidates, 5, 3), np.float32), 1.0) == pytest.approx(1.0 / candidates)
    separated = np.zeros((candidates, 7), np.float32)
    separated[np.arange(7) % candidates, np.arange(7)] = 30.0
    assert decidedness(separated, 1.0) == pytest.approx(1.0, abs=1e-6)
    # The largest temperature decides any gap, without overflow warnings or NaN.
    assert decidedness(separated * 1e-6, 1e30) == pytest.approx(1.0)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_candidate_probabilities_average_the_candidates_into_the_quantizers_soft_weight(bits, rng):
    logits = rng.normal(size=(2 ** bits, 4, 3, 3, 3)).astype(np.float32)
    quantizer = SlbFakeQuantizerPerLayer(bits)
    quantizer.set_temperature(2.5)
    quantizer.set_train(True)
    soft_weight = quantizer(Tensor(logits)).asnumpy()
    probabilities = candidate_probabilities(logits, 2.5)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-6)
    averaged = np.tensordot(candidate_values(bits), probabilities, axes=1)
    np.testing.assert_allclose(averaged, soft_weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("logits, temperature, named", [
    (np.zeros((1, 3)), 1.0, "'logits'"),
    (np.zeros((2, 3)), 0.0, "'temperature'"),
    (np.zeros((2, 3)), float("nan"), "'temperature'"),
    (np.zeros((2, 3)), True, "'temperature'"),
])
def test_candidate_probabilities_validate_their_arguments(logits, temperature, named):
    with pytest.raises(ValueError, match=named):
        candidate_probabilities(logits, temperature)


def test_training_writes_every_figure_and_redraws_them_each_epoch(tmp_path, monkeypatch):
    snapshots = []
    draw = plots.draw_training_figures

    def draw_and_snapshot(folder, history, decidedness_history):
        paths = draw(folder, history, decidedness_history)
        snapshots.append({os.path.basename(path): Path(path).read_bytes() for path in paths})
        return paths

    monkeypatch.setattr(plots, "draw_training_figures", draw_and_snapshot)
    train.main(tiny_args(tmp_path, quant_type="W2", eval_interval=1, plots=True))
    assert len(snapshots) == 2
    for name in TRAINING_FIGURES:
        assert snapshots[0][name] != snapshots[1][name], name  # epoch 2 redrew it with a second point
    assert pngs_in(tmp_path) == sorted(ALL_TRAINING_FIGURES)  # and no temporary file is left
    for name in ALL_TRAINING_FIGURES:
        assert_png(tmp_path / name)


def test_float_network_and_no_evaluation_still_get_their_curves(tmp_path):
    history = [{"epoch": epoch, "loss": 2.0 / epoch, "temperature": None, "lr": 0.1 / epoch} for epoch in (1, 2, 3)]
    written = plots.draw_training_figures(str(tmp_path), history, [(1, {}), (2, {}), (3, {})])
    assert sorted(map(os.path.basename, written)) == sorted([plots.SCHEDULES, plots.TRAINING_CURVES])
    for path in written:
        assert_png(path)


def test_few_layers_are_drawn_as_lines_and_chosen_values_of_mixed_bit_widths(tmp_path):
    history = [{"epoch": epoch, "loss": 1.0, "temperature": 1.2 ** epoch, "lr": 0.1} for epoch in (1, 2)]
    decided = [(epoch, {"conv1": 0.3 * epoch, "end_point": 0.25 + 0.2 * epoch}) for epoch in (1, 2)]
    plots.draw_training_figures(str(tmp_path), history, decided)
    chosen = [("conv1", np.array([-1.0, 1.0, 1.0])), ("layer1.conv", candidate_values(4)[[0, 3, 3, 15]])]
    plots.draw_chosen_values(str(tmp_path), chosen)
    for name in ALL_TRAINING_FIGURES:
        assert_png(tmp_path / name)


def test_plots_false_writes_no_figure(tmp_path):
    train.main(tiny_args(tmp_path, quant_type="W1", epoch_size=1, warmup_epochs=0, plots=False))
    assert pngs_in(tmp_path) == []


def test_without_matplotlib_training_says_so_once_and_completes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setattr(plots, "_missing_reported", False)
    result = train.main(tiny_args(tmp_path, quant_type="W1", plots=True))
    assert len(result["history"]) == 2 and os.path.isfile(result["checkpoint"])
    assert plots.draw_sweep(str(tmp_path), [{"quant_type": "W1"}]) is None
    printed = capsys.readouterr().out
    assert printed.count(plots.MISSING_MESSAGE) == 1
    assert pngs_in(tmp_path) == []


def test_a_figure_that_cannot_be_drawn_is_said_once_and_does_not_stop_training(tmp_path, monkeypatch, capsys):
    def fail(*_):
        raise OSError("No space left on device")

    monkeypatch.setattr(plots, "draw_training_figures", fail)
    report = SimpleNamespace(history=[{"epoch": 1, "loss": 1.0, "temperature": None, "lr": 0.1}])
    callback = TrainingPlots(nn.Dense(2, 2), report, str(tmp_path))
    callback.on_train_epoch_end(None)
    callback.on_train_epoch_end(None)
    callback.on_train_end(None)
    printed = capsys.readouterr().out
    assert printed.count("No space left on device") == 1 and "training goes on without figures" in printed
    assert pngs_in(tmp_path) == []


def test_a_figure_whose_save_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    def fail(*_):
        raise OSError("Read-only file system")

    figure, _ = plots._new_figure(2, 2)  # pylint: disable=protected-access
    monkeypatch.setattr(plots.os, "replace", fail)
    with pytest.raises(OSError, match="Read-only"):
        plots._save(figure, str(tmp_path), "curves.png")  # pylint: disable=protected-access
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("weight_search", ["slb", "ste"])
def test_search_state_reads_each_layers_chosen_candidates(weight_search):
    from mindspore_slb import QuantDtype, SlbQuantAwareTraining  # pylint: disable=import-outside-toplevel
    from mindspore_slb.registry import is_quantized  # pylint: disable=import-outside-toplevel
    from slb_recipe.search_state import chosen_values_by_layer, decidedness_by_layer  # noqa: E402
    from tiny_nets import ConvBnNet  # pylint: disable=import-outside-toplevel
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "weight_search": weight_search,
                                  "enable_weight_scale": True})
    net = algo.apply(ConvBnNet())
    layers = {path: cell for path, cell in net.cells_and_names() if is_quantized(cell)}
    chosen = chosen_values_by_layer(net)
    assert [path for path, _ in chosen] == list(layers) and len(layers) == 3
    for path, values in chosen:
        hard = layers[path].hard_weight()
        # Times the layer's scale, the chosen candidates are its hard weight.
        scale = layers[path].weight_scale.asnumpy().reshape((-1,) + (1,) * (hard.ndim - 1))
        assert np.allclose(values.reshape(hard.shape) * scale, hard)
        assert set(np.unique(values).tolist()) <= set(candidate_values(2).tolist())
    # Only SLB searches over candidate probabilities; the straight-through baseline has none.
    assert list(decidedness_by_layer(net)) == (list(layers) if weight_search == "slb" else [])
