"""Bit-width sweep: quantization types x seeds, one recipe, tables with mean and spread, skip on re-run."""
import json
import statistics

import pytest

from recipe_data import PNG_SIGNATURE, tiny_args

from slb_recipe import config as recipe_config
from slb_recipe import sweep
from slb_recipe.plots import SWEEP_RESULTS



def test_sweep_trains_every_type_and_seed_writes_the_tables_and_skips_finished_runs_on_rerun(tmp_path, capsys):
    args = tiny_args(tmp_path, epoch_size=1, warmup_epochs=0, eval_num_samples=24,
                     sweep_quant_types="W32,W1", sweep_seeds="3,5", plots=True)
    result = sweep.main(args)
    runs = result["runs"]
    assert [(row["quant_type"], row["seed"]) for row in runs] == [("W32", 3), ("W32", 5), ("W1", 3), ("W1", 5)]
    for row in runs:
        assert 0.0 <= row["top_1_accuracy"] <= row["top_5_accuracy"] <= 1.0
        assert row["train_time_s"] > 0
        folder = tmp_path / row["quant_type"] / f"seed_{row['seed']}"
        assert row["checkpoint"] == str(folder / "checkpoint" / f"resnet18_{row['quant_type']}-1.ckpt")
        assert json.loads((folder / sweep.RUN_RESULT_NAME).read_text()) == row
    printed = capsys.readouterr().out
    assert "sweep run 1/4: W32 seed 3" in printed and "sweep run 4/4: W1 seed 5" in printed

    assert [record["quant_type"] for record in result["summary"]] == ["W32", "W1"]
    for record in result["summary"]:
        same_type = [row for row in runs if row["quant_type"] == record["quant_type"]]
        top_1 = [row["top_1_accuracy"] for row in same_type]
        assert record["runs"] == 2
        assert record["top_1_mean"] == pytest.approx(statistics.mean(top_1))
        assert (record["top_1_min"], record["top_1_max"]) == (min(top_1), max(top_1))
        assert record["train_time_s"] == pytest.approx(sum(row["train_time_s"] for row in same_type))

    table = (tmp_path / sweep.MARKDOWN_NAME).read_text()
    assert table.strip() in printed
    assert table.splitlines()[0].startswith("| quantization type | runs | top-1 mean | top-1 std | top-1 min–max |")
    assert f"| W1 | 5 | {runs[3]['top_1_accuracy']:.4f} | {runs[3]['top_5_accuracy']:.4f} |" in table
    # JSON keeps every float exactly (shortest round-trip repr).
    assert json.loads((tmp_path / sweep.JSON_NAME).read_text()) == result
    assert (tmp_path / SWEEP_RESULTS).read_bytes().startswith(PNG_SIGNATURE)

    rerun = sweep.main(args)
    assert rerun == result
    printed = capsys.readouterr().out
    assert printed.count("already finished") == 4 and "training W1" not in printed


def test_summary_gives_mean_sample_std_and_range_over_seeds():
    rows = [{"quant_type": "W2", "seed": seed, "top_1_accuracy": top_1, "top_5_accuracy": 1.0, "train_time_s": 2.0}
            for seed, top_1 in ((1, 0.5), (2, 0.7), (3, 0.9))]
    rows.append({"quant_type": "W4", "seed": 1, "top_1_accuracy": 0.8, "top_5_accuracy": 0.9, "train_time_s": 1.5})
    two_bits, four_bits = sweep.summarize(rows)
    assert two_bits["runs"] == 3 and two_bits["train_time_s"] == 6.0
    assert two_bits["top_1_mean"] == pytest.approx(0.7) and two_bits["top_1_std"] == pytest.approx(0.2)
    assert (two_bits["top_1_min"], two_bits["top_1_max"]) == (0.5, 0.9) and two_bits["top_5_std"] == 0.0
    assert four_bits["runs"] == 1 and four_bits["top_1_std"] is None  # no spread from one run
    table = sweep.markdown_tables([two_bits, four_bits], rows)
    assert "| W2 | 3 | 0.7000 | 0.2000 | 0.5000–0.9000 | 1.0000 | 0.0000 | 1.0000–1.0000 | 6.0 |" in table
    assert "| W4 | 1 | 0.8000 | n/a | 0.8000–0.8000 |" in table


@pytest.mark.parametrize("key, value, shown", [
    ("sweep_quant_types", "W32,W3", "'W3' is not valid"),
    ("sweep_quant_types", "", "nothing listed"),
    ("sweep_quant_types", "W1,W1", "a value repeats"),
    ("sweep_seeds", "1,two", "'two' is not valid"),
    ("sweep_seeds", "-1", "'-1' is not valid"),
])
def test_bad_sweep_lists_are_one_line_errors_naming_the_key(key, value, shown):
    with pytest.raises(SystemExit) as raised:
        recipe_config.parse_args([f"--{key}", value])
    message = str(raised.value.code)
    assert "\n" not in message and f"config key '{key}'" in message and shown in message


def test_sweep_lists_accept_every_quant_type_and_spaces():
    loaded = recipe_config.load_config(["--sweep_quant_types", " W4A8 , W2", "--sweep_seeds", "0, 7"])
    assert recipe_config.parse_list("sweep_quant_types", loaded.sweep_quant_types) == ["W4A8", "W2"]
    assert recipe_config.parse_list("sweep_seeds", loaded.sweep_seeds) == [0, 7]
