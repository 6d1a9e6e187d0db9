"""Bit-width sweep: one recipe, four quantization types, one table."""
import json

from recipe_data import tiny_args

from slb_recipe import sweep


def test_sweep_trains_every_bit_width_and_writes_the_table(tmp_path, capsys):
    rows = sweep.main(tiny_args(tmp_path, epoch_size=1, warmup_epochs=0, eval_num_samples=24))
    assert [row["quant_type"] for row in rows] == ["W32", "W4", "W2", "W1"]
    for row in rows:
        assert 0.0 <= row["top_1_accuracy"] <= row["top_5_accuracy"] <= 1.0
        assert f"/{row['quant_type']}/checkpoint/resnet18_{row['quant_type']}-1.ckpt" in row["checkpoint"]
    printed = capsys.readouterr().out
    table = (tmp_path / "sweep_results.md").read_text()
    assert table.splitlines()[0] == "| quantization type | top-1 accuracy | top-5 accuracy |"
    assert table.strip() in printed
    assert f"| W4 | {rows[1]['top_1_accuracy']:.4f} | {rows[1]['top_5_accuracy']:.4f} |" in table
    # JSON keeps every float exactly (shortest round-trip repr).
    assert json.loads((tmp_path / "sweep_results.json").read_text()) == rows
