"""Comparisons from one starting state: Golden Stick's layout moved to this package's, the runs that
share it, and the step comparison's summary. Golden Stick itself is not needed: a network laid out
as its rewrite leaves one stands in for it."""
import os
import sys

import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

from mindspore_slb import QuantDtype, SlbQuantAwareTraining

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import golden_stick_bridge  # noqa: E402  (scripts beside the benchmarks, not package modules)
import side_by_side  # noqa: E402
import step_equivalence  # noqa: E402
from test_side_by_side import fake_anchor  # noqa: E402


class GoldenStickConv(nn.Cell):
    """As Golden Stick's SLB conv: the original layer as `_handler`, logits [*weight_shape, K] as `weight`."""

    def __init__(self, handler, rng):
        super().__init__()
        self._handler = handler
        self.weight = Parameter(Tensor(rng.normal(size=(*handler.weight.shape, 2)).astype(np.float32)), name="weight")


class Block(nn.Cell):
    """A conv whose rewrite leaves the original layer behind, and one inside a SequentialCell."""

    def __init__(self, golden_stick_rng=None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.down = nn.SequentialCell([nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)])
        if golden_stick_rng is not None:
            self.Conv2d = GoldenStickConv(self.conv1, golden_stick_rng)
            self.down[0] = GoldenStickConv(self.down[0], golden_stick_rng)

    def construct(self, x):
        return self.bn(self.conv1(x)) + self.down(x)


class Net(nn.Cell):
    def __init__(self, golden_stick_rng=None):
        super().__init__()
        self.layer = Block(golden_stick_rng)

    def construct(self, x):
        return self.layer(x)


def test_golden_stick_names_and_layout_become_this_packages(rng):
    golden_stick = Net(rng)
    names = golden_stick_bridge.our_names(golden_stick)
    assert names == {"layer.Conv2d.weight": "layer.conv1.weight_logits",
                     "layer.down.0.weight": "layer.down.0.weight_logits",
                     **{f"layer.{bn}.{part}": f"layer.{bn}.{part}" for bn in ("bn", "down.1")
                        for part in ("moving_mean", "moving_variance", "gamma", "beta")}}
    state = golden_stick_bridge.golden_stick_state(golden_stick)
    np.testing.assert_array_equal(state["layer.conv1.weight_logits"],
                                  np.moveaxis(golden_stick.layer.Conv2d.weight.asnumpy(), -1, 0))
    assert state["layer.down.0.weight_logits"].shape == (2, 4, 3, 1, 1)


def test_a_golden_stick_state_loads_into_this_packages_network(rng):
    golden_stick = Net(rng)
    golden_stick.layer.bn.gamma.set_data(Tensor(rng.uniform(0.5, 2, 4).astype(np.float32)))
    ours = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1}).apply(Net())
    golden_stick_bridge.load_state(ours, golden_stick_bridge.golden_stick_state(golden_stick))
    params = {param.name: param.asnumpy() for param in ours.get_parameters()}
    np.testing.assert_array_equal(params["layer.conv1.weight_logits"],
                                  np.moveaxis(golden_stick.layer.Conv2d.weight.asnumpy(), -1, 0))
    np.testing.assert_array_equal(params["layer.down.0.weight_logits"],
                                  np.moveaxis(golden_stick.layer.down[0].weight.asnumpy(), -1, 0))
    np.testing.assert_array_equal(params["layer.bn.gamma"], golden_stick.layer.bn.gamma.asnumpy())


def test_a_state_for_another_network_is_refused_by_name_and_shape():
    ours = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1}).apply(Net())
    with pytest.raises(ValueError, match=r"1 parameters this network does not have, e.g. \['layer.fc.weight'\]"):
        golden_stick_bridge.load_state(ours, {"layer.fc.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"layer.conv1.weight_logits of shape \(4, 4, 3, 3, 3\), this network "
                                         r"\(2, 4, 3, 3, 3\)"):
        golden_stick_bridge.load_state(ours, {"layer.conv1.weight_logits": np.zeros((4, 4, 3, 3, 3), np.float32)})


def test_same_start_runs_share_golden_sticks_starting_state(tmp_path, rng):
    start = str(tmp_path / side_by_side.START_FILE)
    with pytest.raises(SystemExit, match="no starting state .* was not made with --same_start"):
        side_by_side.start_hook("mindspore_slb", start)
    golden_stick = Net(rng)
    side_by_side.start_hook("golden_stick", start)(golden_stick)
    ours = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1}).apply(Net())
    side_by_side.start_hook("mindspore_slb", start)(ours)
    np.testing.assert_array_equal(ours.layer.conv1.weight_logits.asnumpy(),
                                  np.moveaxis(golden_stick.layer.Conv2d.weight.asnumpy(), -1, 0))


def test_same_start_runs_golden_stick_first_and_passes_the_state_file(tmp_path, monkeypatch):
    anchor = fake_anchor(tmp_path / "anchor", "")
    commands = []

    def record(command, **_):
        commands.append(command)
        folder = command[command.index("--worker") + 2]
        with open(os.path.join(folder, side_by_side.METRICS_FILE), "w", encoding="utf-8") as stream:
            stream.write('{"top_1_accuracy": 0.5}')
        return type("Done", (), {"returncode": 0})()
    monkeypatch.setattr(side_by_side.subprocess, "run", record)
    output = tmp_path / "out"
    side_by_side.main(["--anchor", anchor, "--output", str(output), "--quant_types", "W1", "--seeds", "3",
                       "--same_start"])
    assert [command[command.index("--worker") + 1] for command in commands] == ["golden_stick", "mindspore_slb"]
    expected = str(output / "golden_stick" / "W1" / "seed_3" / side_by_side.START_FILE)
    assert [command[command.index("--start_state") + 1] for command in commands] == [expected, expected]


def test_the_step_comparison_reports_gradient_differences_and_batchnorm_outputs_of_opposite_sign():
    anchor = {"loss@1": np.array(2.0), "grad:a@1": np.array([1.0, -2.0]), "grad:b@1": np.array([0.5, 0.5]),
              "bn:x@1": np.array([[1.0, -3e-7], [2.0, 4.0]]), "bn:y@1": np.array([1.0, -1.0]),
              "loss@8": np.array(1.5), "grad:a@8": np.array([4.0]), "grad:b@8": np.array([0.0]),
              "bn:x@8": np.array([1.0]), "bn:y@8": np.array([0.0])}
    ours = {"loss@1": np.array(2.0), "grad:a@1": np.array([1.0, -2.002]), "grad:b@1": np.array([0.5, 0.505]),
            "bn:x@1": np.array([[1.0, 2e-7], [2.0, 4.0]]), "bn:y@1": np.array([-1.0, 1.0]),
            "loss@8": np.array(1.4), "grad:a@8": np.array([4.0]), "grad:b@8": np.array([0.0]),
            "bn:x@8": np.array([1.0]), "bn:y@8": np.array([1e-9])}  # zero against a sign is no flip
    rows = step_equivalence.compare(anchor, ours, [1.0, 8.0])
    assert rows[0]["in_parameter"] == "b" and rows[0]["largest_relative_gradient_difference"] == pytest.approx(0.01)
    assert rows[0]["batchnorm_outputs_of_opposite_sign"] == 3
    assert rows[0]["first_of_opposite_sign"] == {"batchnorm": "x", "golden_stick": pytest.approx(-3e-7),
                                                 "mindspore_slb": pytest.approx(2e-7)}
    assert (rows[1]["loss_golden_stick"], rows[1]["loss_mindspore_slb"]) == (1.5, pytest.approx(1.4))
    assert rows[1]["largest_relative_gradient_difference"] == 0.0
    assert (rows[1]["batchnorm_outputs_of_opposite_sign"], rows[1]["first_of_opposite_sign"]) == (0, None)
    ours["grad:b@8"] = np.array([1e-9])  # a gradient where Golden Stick's is zero is the largest difference
    assert step_equivalence.compare(anchor, ours, [8.0])[0]["largest_relative_gradient_difference"] == np.inf


def test_the_step_comparison_refuses_a_temperature_that_is_not_positive(tmp_path, capsys):
    anchor = fake_anchor(tmp_path / "anchor", "")
    with pytest.raises(SystemExit):
        step_equivalence.parse_args(["--anchor", anchor, "--temperatures", "1", "0"])
    assert "--temperatures must be positive, but got [0.0]" in capsys.readouterr().err
