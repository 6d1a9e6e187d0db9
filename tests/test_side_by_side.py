"""Golden Stick runs in the benchmark scripts: which package each run imports, resuming, the summary."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import side_by_side  # noqa: E402  (a script beside the benchmarks, not a package module)


def fake_anchor(root, shim_source):
    """An anchor folder as golden_stick_env.sh lays it out: venv/bin/python and shim/mindspore_slb."""
    os.makedirs(root / "venv" / "bin")
    # A script rather than a link: run through a link outside its venv, Python would not find the venv.
    python = root / "venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    os.makedirs(root / "shim" / "mindspore_slb")
    (root / "shim" / "mindspore_slb" / "__init__.py").write_text(shim_source)
    return str(root)


def test_golden_stick_runs_import_the_shim_before_this_repository(tmp_path):
    anchor = fake_anchor(tmp_path / "anchor", "raise SystemExit('the shim was imported')\n")
    output = tmp_path / "out"
    args = side_by_side.parse_args(["--anchor", anchor, "--output", str(output), "--", "--epoch_size", "1"])
    with pytest.raises(SystemExit, match="golden_stick W1 seed 1 failed"):
        side_by_side.run_one(args, "golden_stick", "W1", 1)
    assert "the shim was imported" in (output / "golden_stick" / "W1" / "seed_1" / "log.txt").read_text()


RECIPE_BENCHMARK = os.path.join(side_by_side.REPO_ROOT, "benchmarks", "recipe_benchmark.py")


def test_the_recipe_benchmark_times_golden_stick_with_its_python_and_shim(tmp_path):
    anchor = fake_anchor(tmp_path / "anchor", "raise SystemExit('the shim was imported')\n")
    done = subprocess.run([sys.executable, RECIPE_BENCHMARK, "--widths", "4", "--bits", "1", "--rounds", "1",
                           "--steps", "1", "--batch_size", "2", "--image_size", "16", "--num_parallel_workers", "1",
                           "--paths", "golden_stick", "--anchor", anchor, "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "width 4 W1 golden_stick failed" in done.stderr and "the shim was imported" in done.stderr
    done = subprocess.run([sys.executable, RECIPE_BENCHMARK, "--paths", "golden_stick"], capture_output=True, text=True)
    assert done.returncode == 2 and "the golden_stick path needs --anchor DIR holding venv/bin/python" in done.stderr


def test_finished_runs_are_read_back_and_summarised(tmp_path, capsys):
    anchor = fake_anchor(tmp_path / "anchor", "")
    top1 = {("mindspore_slb", 1): 0.80, ("mindspore_slb", 2): 0.82, ("golden_stick", 1): 0.79,
            ("golden_stick", 2): 0.77}
    for (implementation, seed), accuracy in top1.items():
        folder = tmp_path / "out" / implementation / "W1" / f"seed_{seed}"
        os.makedirs(folder)
        (folder / side_by_side.RESULT_FILE).write_text(json.dumps(
            {"implementation": implementation, "quant_type": "W1", "seed": seed, "top_1_accuracy": accuracy}))
    side_by_side.main(["--anchor", anchor, "--output", str(tmp_path / "out"), "--quant_types", "W1",
                       "--seeds", "1", "2"])
    assert capsys.readouterr().out.count("finished before, read back") == 4
    summary = json.loads((tmp_path / "out" / "side_by_side.json").read_text())["summary"]
    assert [(row["implementation"], row["seeds"], round(row["top_1_mean"], 4), row["top_1_min"], row["top_1_max"])
            for row in summary] == [("mindspore_slb", 2, 0.81, 0.80, 0.82), ("golden_stick", 2, 0.78, 0.77, 0.79)]
    assert "| golden_stick | W1 | 2 | 0.7800 | 0.7700 - 0.7900 |" in (tmp_path / "out" / "side_by_side.md").read_text()


def test_an_anchor_without_its_venv_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        side_by_side.parse_args(["--anchor", str(tmp_path)])
    assert "has no venv/bin/python: build it with bash benchmarks/golden_stick_env.sh DIR" in capsys.readouterr().err


def test_the_recipe_imports_only_mindspore_slbs_top_level_names_until_it_builds_a_network(tmp_path):
    shim = tmp_path / "shim" / "mindspore_slb"
    os.makedirs(shim)
    (shim / "__init__.py").write_text("")  # a package with no submodules, as Golden Stick's shim
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import mindspore_slb; sys.path.insert(0, sys.argv[2]); "
            "import slb_recipe.train, slb_recipe.evaluate, slb_recipe.sweep")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "shim"), side_by_side.REPO_ROOT],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


SHIM = os.path.join(side_by_side.REPO_ROOT, "benchmarks", "golden_stick_shim")
FAKE_GOLDEN_STICK = {
    "mindspore_gs/__init__.py": ("class SlbQuantAwareTraining:\n"
                                 "    def __init__(self, config):\n"
                                 "        self.config = config\n\n"
                                 "    def apply(self, net):\n"
                                 "        return net\n"),
    "mindspore_gs/quantization/__init__.py": "",
    "mindspore_gs/quantization/slb/__init__.py": "",
    "mindspore_gs/quantization/slb/slb_fake_quantizer.py": (
        "from mindspore import nn\n\n"
        "class SlbFakeQuantizerPerLayer(nn.Cell):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.temperature = 4.0\n\n"
        "    def construct(self, x):\n"
        "        return x\n"),
}


def test_the_recipes_epoch_end_runs_on_golden_stick_through_the_shim(tmp_path):
    """The recipe's network building and epoch-end callbacks on a network holding Golden Stick's quantizer, with
    mindspore_slb served by benchmarks/golden_stick_shim (Golden Stick itself stood in for by the
    modules and names the shim imports): the epoch line shows the temperature, and no decidedness,
    since the network has no layer of this package's type."""
    for name, source in FAKE_GOLDEN_STICK.items():
        os.makedirs((tmp_path / name).parent, exist_ok=True)
        (tmp_path / name).write_text(source)
    code = "\n".join([
        "import sys",
        "from types import SimpleNamespace",
        # As in Golden Stick's environment, where this package is not installed: no finder that
        # would serve mindspore_slb's submodules from the repository behind the shim's back.
        "sys.meta_path[:] = [f for f in sys.meta_path if 'mindspore_slb' not in getattr(f, '__module__', '')]",
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]",
        "import mindspore_slb",
        "assert mindspore_slb.__file__.startswith(sys.argv[1]), mindspore_slb.__file__",
        "sys.path.insert(0, sys.argv[3])",
        "import numpy as np",
        "import mindspore as ms",
        "from mindspore_gs.quantization.slb.slb_fake_quantizer import SlbFakeQuantizerPerLayer",
        "from slb_recipe.callbacks import EpochReport, TrainingPlots",
        "from slb_recipe.config import load_config",
        "from slb_recipe.network import build_network",
        "_, algo = build_network(load_config(['--quant_type', 'W1', '--width', '4']))",
        "assert type(algo).__module__ == 'mindspore_slb' and algo.config['weight_search'] == 'slb', algo",
        "net = ms.nn.SequentialCell([ms.nn.Dense(2, 2), SlbFakeQuantizerPerLayer()])",
        "report = EpochReport(net, np.full(1, 0.1, np.float32), 1, has_trained_epoch=0, epoch_size=2)",
        "args = SimpleNamespace(cur_epoch_num=1, cur_step_num=1, net_outputs=ms.Tensor(0.5, ms.float32))",
        "context = SimpleNamespace(original_args=lambda: args)",
        "report.on_train_epoch_begin(context)",
        "report.on_train_step_end(context)",
        "report.on_train_epoch_end(context)",
        "plots = TrainingPlots(net, report, sys.argv[4])",
        "plots.on_train_epoch_end(context)",
        "plots.on_train_end(context)",
        "assert not plots.failed and plots.decidedness_history == [(1, {})], plots.decidedness_history",
    ])
    done = subprocess.run([sys.executable, "-c", code, SHIM, str(tmp_path), side_by_side.REPO_ROOT,
                           str(tmp_path / "figures")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1/2: loss 0.500000" in done.stdout and "temperature 4, lr 0.1" in done.stdout
    assert "decided" not in done.stdout
