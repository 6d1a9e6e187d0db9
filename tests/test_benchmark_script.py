"""The benchmark scripts measure every configuration and report ratios to float."""
import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "benchmark.py")


def test_tiny_benchmark_reports_each_configuration(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, SCRIPT, "--width", "4", "--image_size", "16", "--batch_size", "4",
                           "--steps", "5", "--warmup", "0", "--bits", "1", "--modes", "GRAPH",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| GRAPH")]
    assert [row.split("|")[2].strip() for row in rows] == ["float", "W1"]
    assert "| 1.00x |" in rows[0]
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["bits"]) for r in results] == [("GRAPH", 0), ("GRAPH", 1)]
    for result in results:
        assert result["step_s"] > 0 and result["first_step_s"] > 0
        assert result["peak_rss_gb"] > 0 and result["infer_images_per_s"] > 0
        assert result["infer_speed_vs_float_twin"] > 0
    low, high = results[1]["packed_mindir_time_ratio_quartiles"]
    assert 0 < low <= results[1]["packed_mindir_time_ratio"] <= high
    assert rows[1].endswith(f"| {results[1]['packed_mindir_time_ratio']:.2f}x ({low:.2f}-{high:.2f}) |")


def test_too_few_steps_is_refused():
    done = subprocess.run([sys.executable, SCRIPT, "--steps", "3"], capture_output=True, text=True)
    assert done.returncode == 2 and "--steps must be at least 5, got 3" in done.stderr


RECIPE_SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "recipe_benchmark.py")


def test_recipe_benchmark_times_each_configuration_against_float_in_each_round(tmp_path):
    out = tmp_path / "recipe.json"
    done = subprocess.run([sys.executable, RECIPE_SCRIPT, "--widths", "4", "--bits", "1", "--rounds", "2",
                           "--steps", "2", "--batch_size", "4", "--image_size", "16", "--num_parallel_workers", "1",
                           "--paths", "plain", "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["width"], r["quant_type"], r["path"]) for r in rows] == [(4, "W32", "-"), (4, "W1", "plain")]
    float_row = rows[0]
    assert float_row["ratio"] == float_row["ratio_min"] == float_row["ratio_max"] == 1.0
    for row in rows:
        assert len(row["step_ms_rounds"]) == 2 and all(step > 0 for step in row["step_ms_rounds"])
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert "| 4 | W1 | plain |" in done.stdout
