"""The benchmark scripts measure every configuration and report ratios to float."""
import json
import os
import re
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "benchmark.py")


def test_tiny_benchmark_reports_each_configuration_against_a_baseline_tree(tmp_path):
    out = tmp_path / "bench.json"
    # This checkout as its own baseline: the comparison's plumbing, not a difference, is under test.
    done = subprocess.run([sys.executable, SCRIPT, "--width", "4", "--image_size", "16", "--batch_size", "4",
                           "--steps", "5", "--warmup", "0", "--bits", "1", "--modes", "GRAPH", "--rounds", "1",
                           "--baseline_tree", os.path.join(os.path.dirname(SCRIPT), os.pardir),
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if "| GRAPH |" in line]
    # SlbMomentum for SLB on the current tree only: a float network has no logits, the baseline
    # tree is measured as an older checkout would be.
    assert [tuple(row.split("|")[index].strip() for index in (1, 3, 4)) for row in rows] == \
        [("current", "float", "nn.Momentum"), ("baseline", "float", "nn.Momentum"),
         ("current", "W1", "nn.Momentum"), ("current", "W1", "SlbMomentum"), ("current", "W1", "SlbMomentum_bfloat16"),
         ("baseline", "W1", "nn.Momentum")]
    assert "| 1.00x (1.00-1.00) |" in rows[0]
    saved = json.loads(out.read_text())
    assert len(saved["rounds"]) == 1 and len(saved["rounds"][0]) == 6
    for row in saved["rows"]:
        assert row["step_s"] > 0 and row["first_step_s"] > 0 and row["peak_rss_gb"] > 0
        assert row["infer_images_per_s"] > 0 and row["infer_speed_vs_float_twin"] > 0
        low, high = row["step_s_ratio_range"]
        assert low <= row["step_s_ratio"] <= high
    quantized = [row for row in saved["rows"] if row["bits"] == 1]
    assert all(row["packed_mindir_time_ratio"] > 0 for row in quantized)
    assert rows[2].endswith(f"| {quantized[0]['packed_mindir_time_ratio']:.2f}x |")


def test_bad_arguments_are_refused():
    done = subprocess.run([sys.executable, SCRIPT, "--steps", "3"], capture_output=True, text=True)
    assert done.returncode == 2 and "--steps must be at least 5, got 3" in done.stderr
    done = subprocess.run([sys.executable, SCRIPT, "--baseline_tree", "/nonexistent"], capture_output=True, text=True)
    assert done.returncode == 2 and "--baseline_tree '/nonexistent' holds no mindspore_slb package" in done.stderr


RECIPE_SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "recipe_benchmark.py")


def test_recipe_benchmark_times_each_configuration_against_float_in_each_round(tmp_path):
    out = tmp_path / "recipe.json"
    done = subprocess.run([sys.executable, RECIPE_SCRIPT, "--widths", "4", "--bits", "1", "--rounds", "2",
                           "--steps", "2", "--batch_size", "4", "--image_size", "16", "--num_parallel_workers", "1",
                           "--paths", "plain", "fused_nn_momentum", "fused_bfloat16", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["width"], r["quant_type"], r["path"]) for r in rows] == \
        [(4, "W32", "-"), (4, "W1", "plain"), (4, "W1", "fused_nn_momentum"), (4, "W1", "fused_bfloat16")]
    float_row = rows[0]
    assert float_row["ratio"] == float_row["ratio_min"] == float_row["ratio_max"] == 1.0
    for row in rows:
        assert len(row["step_ms_rounds"]) == 2 and all(step > 0 for step in row["step_ms_rounds"])
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert "| 4 | W1 | plain |" in done.stdout


BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


def run_benchmark(name, *arguments, timeout=900):
    """The cells of the Markdown table the script prints (rows below its header), and its output."""
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, name), *arguments],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    return rows[1:], done.stdout


def test_optimizer_cost_counts_k_logits_per_quantized_weight():
    rows, _ = run_benchmark("optimizer_cost.py", "--width", "16", "--bits", "1", "4", timeout=600)
    assert [row[0].strip() for row in rows] == ["float", "W1", "W4"]
    floats = [float(row[1]) for row in rows]
    # 2 and 16 logits stand for each conv weight; the other parameters stay as they are.
    assert floats[0] < floats[1] <= 2 * floats[0] + 0.01 and 8 * floats[0] < floats[2] <= 16 * floats[0] + 0.01
    assert rows[0][3].strip() == "1.0x" and all(float(row[2]) > 0 for row in rows)


def test_float_to_slb_quantizes_the_float_trained_network_with_and_without_the_scale():
    rows, stdout = run_benchmark("float_to_slb.py", "--width", "4", "--float_epochs", "1", "--bits", "1")
    assert "ResNet18 width 4 on digits, float-trained 1 epochs: top-1 0." in stdout
    assert [(row[0].strip(), row[1].strip()) for row in rows] == [("W1", "on"), ("W1", "off")]
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[2:])


def test_scale_cost_and_the_kernel_micro_benchmark_time_every_configuration():
    rows, _ = run_benchmark("scale_cost.py", "--width", "4", "--batch_size", "2", "--image_size", "16",
                            "--steps", "2", "--bits", "1")
    assert [row[0].strip() for row in rows] == ["W1"] and float(rows[0][1]) > 0 and float(rows[0][2]) > 0
    _, stdout = run_benchmark("bench_soft_weight.py", "--weights", "4096", "--bits", "1", "--repeats", "1")
    timed = [line.split("|") for line in stdout.splitlines() if line.strip().startswith("2 |")]
    assert len(timed) == 1 and float(timed[0][3].strip().rstrip("x")) > 0


def test_tiny_onnx_benchmark_reports_sizes_times_and_equal_outputs(tmp_path):
    script = os.path.join(os.path.dirname(SCRIPT), "onnx_benchmark.py")
    out = tmp_path / "onnx.json"
    done = subprocess.run([sys.executable, script, "--bits", "2", "--width", "4", "--batch_size", "2",
                           "--image_size", "16", "--rounds", "2", "--output_path", str(tmp_path), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["packed_bytes"] == os.path.getsize(tmp_path / "w2_packed.onnx")
    assert row["float_bytes"] == os.path.getsize(tmp_path / "w2.onnx")
    assert row["packed_vs_float_onnx"] == 0 and row["packed_vs_converted"] < 1e-5 and row["ratio"][0] > 0
    assert [line for line in done.stdout.splitlines() if line.startswith("| W2 | ")]


def test_performance_report_prints_every_table_from_one_run(tmp_path):
    rows, out = run_benchmark("performance.py", "--rounds", "1", "--recipe_steps", "2", "--paths", "fused",
                              "--optimizers", "SlbMomentum", "--recipe_widths", "4", "--step_width", "4",
                              "--bits", "2", "--output", str(tmp_path), timeout=900)
    for title in ("Recipe epochs", "Isolated step, GRAPH", "Peak memory during training"):
        assert f"**{title}" in out
    assert (tmp_path / "recipe.json").is_file() and (tmp_path / "step.json").is_file()
    cells = {row[0].strip(): row[1:] for row in rows if row[0].strip() != "---"}
    # W1, W2, W4 columns: only W2 was measured.
    for label in ("4, fused", "SlbMomentum", "GRAPH, SlbMomentum", "PYNATIVE, SlbMomentum"):
        assert [cell.strip() for cell in cells[label][0:3:2]] == ["-", "-"], (label, cells[label])
        assert cells[label][1].strip().endswith(")") and "x (" in cells[label][1], (label, cells[label])


def test_stream_floor_sets_each_kernel_pass_against_the_bytes_it_moves():
    _, stdout = run_benchmark("stream_floor.py", "--weights", "1000000", "--repeats", "1", "--bits", "1", "4")
    lines = stdout.splitlines()
    assert lines[0].startswith("1000000 weights, ") and lines[0].endswith("milliseconds, best of 1")
    pattern = re.compile(r"(W\d \w+): forward ([\d.]+) \(reading ([\d.]+) GB of logits: ([\d.]+)\); backward with "
                         r"the update ([\d.]+) \(rewriting ([\d.]+) GB of logits and momentum in place: ([\d.]+)\)$")
    rows = {match[1]: [float(value) for value in match.groups()[1:]] for match in map(pattern.match, lines[1:])}
    # The forward reads K logits per weight; the backward reads and writes K logits and K momentum values.
    assert {name: (row[1], row[4]) for name, row in rows.items()} == {
        "W1 float32": (0.01, 0.03), "W1 bfloat16": (0.0, 0.02), "W4 float32": (0.06, 0.26), "W4 bfloat16": (0.03, 0.13)}
    assert all(row[index] > 0 for row in rows.values() for index in (0, 2, 3, 5))
