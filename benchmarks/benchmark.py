"""Training cost of SLB against the same float network, measured in one run.

For each execution mode and each configuration (float, then SLB at each bit width) a fresh
process builds ResNet18, times the first training step (graph compile included) and the median
of the following steps, records its peak resident memory during training (the high-water mark
reset once the network is built; building's own peak is kept apart), and times inference of the network
(converted to plain discrete weights for SLB) against a float twin in the same process; for
SLB, the same rounds time the exported MINDIR whose weights stay bit-packed and are unpacked in its
graph (export's MINDIR_PACKED) against the converted network's MINDIR. The
configurations run in interleaved rounds, so that a change in the machine's load hits every
configuration of a round alike; each ratio to the float network of the same mode is taken within
its round, and the table prints the median over rounds with the range the rounds spanned. --json
saves everything, every round included.

With --baseline_tree, every configuration is also measured with the mindspore_slb of another
checkout (e.g. `git worktree add /tmp/before <commit>`), in the same rounds, right after the
current code's: a before/after comparison on one machine in one run. A tree that predates the
packed MINDIR export leaves those columns empty.

    python benchmarks/benchmark.py                       # ResNet18, 32x32, batch 32, GRAPH and PYNATIVE
    python benchmarks/benchmark.py --bits 1 --modes GRAPH --steps 5 --rounds 1
    python benchmarks/benchmark.py --baseline_tree /tmp/before --rounds 3
    python benchmarks/benchmark.py --training_only      # step and memory only, no inference or export

--optimizers chooses the training step's optimizers: nn.Momentum, SlbMomentum (the logits' step
fused into the kernel) and SlbMomentum_bfloat16 (that, with the logits and their momentum stored in
bfloat16, search_dtype "bfloat16"); SLB configurations run once per optimizer, while the float
network (no logits) and a baseline tree run with nn.Momentum only.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmark_results import save_results  # beside this script
from resnet_step import OPTIMIZER_SLB_CONFIG, OPTIMIZERS  # beside this script

# The repository root: the recipe's ResNet18 and, when not installed, mindspore_slb itself.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = ("GRAPH", "PYNATIVE")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64, help="first-stage channels of ResNet18 (64 = standard)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps (median reported), >= 5")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--baseline_tree", help="another checkout whose mindspore_slb is measured alongside")
    parser.add_argument("--json", default="benchmark.json",
                        help="where to save the results (default: %(default)s in the current folder)")
    parser.add_argument("--training_only", action="store_true",
                        help="time training only, not inference and the exported files")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "BITS", "TREE", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 5:
        parser.error(f"--steps must be at least 5, got {args.steps}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.baseline_tree and not os.path.isfile(os.path.join(args.baseline_tree, "mindspore_slb", "__init__.py")):
        parser.error(f"--baseline_tree '{args.baseline_tree}' holds no mindspore_slb package")
    return args


def median_seconds(run, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_high_water_mark():
    """Sets this process's peak resident memory (VmHWM) back to its current size (Linux's
    /proc/self/clear_refs, value 5)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


def high_water_mark_gb():
    """Peak resident memory since the last reset, GiB (VmHWM of /proc/self/status, in kB)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    raise RuntimeError("/proc/self/status has no VmHWM line")


def measure(mode, bits, args, tree=None, optimizer="nn.Momentum"):
    """One configuration, in this process; bits 0 is the float network. tree: the checkout whose
    mindspore_slb is measured (None: this one); optimizer: one of OPTIMIZERS."""
    if tree:
        sys.path.insert(0, tree)
    import mindspore as ms
    from mindspore import nn

    import mindspore_slb
    from resnet_step import momentum_train_step, random_batch, slb_resnet18
    packed_network = getattr(mindspore_slb, "packed_network", None)

    ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
    ms.set_device(args.device_target)
    ms.set_seed(0)
    network, algo = slb_resnet18(bits, args.width, epoch_size=1, has_trained_epoch=0,
                                 **OPTIMIZER_SLB_CONFIG.get(optimizer, {}))
    train_step = momentum_train_step(network, optimizer=optimizer)
    images, labels = random_batch(args.batch_size, args.image_size)
    # Building the network (apply's start logits) passes through more memory than training holds:
    # from here on the high-water mark counts training alone.
    build_peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    reset_high_water_mark()

    def step():
        train_step(images, labels).asnumpy()

    first_step = median_seconds(step, 1)
    for _ in range(args.warmup):
        step()
    step_time = median_seconds(step, args.steps)
    # Training's high-water mark, before the inference networks below add their own.
    training = {"mode": mode, "bits": bits, "first_step_s": first_step, "step_s": step_time,
                "peak_rss_gb": high_water_mark_gb(), "build_peak_gb": build_peak_gb}
    if args.training_only:
        return training
    inference_net = algo.convert(network) if algo else network
    # convert and packed_network both rewrite their network in place: the packed MINDIR comes from
    # a second network of the same shape (inference time does not depend on the weights' values).
    packed_net = packed_network(slb_resnet18(bits, args.width, epoch_size=1, has_trained_epoch=0)[0]) \
        if algo and packed_network else None
    # Inference is compared with a float twin in this process, timed alternately: across
    # processes, this machine's noise is larger than any difference between the two networks.
    # For SLB, the same rounds time the MINDIR with bit-packed weights unpacked in its graph (what
    # export's MINDIR_PACKED writes) against the converted network's MINDIR, both as nn.GraphCell.
    networks = {"inference": inference_net, "float_twin": slb_resnet18(0, args.width)[0]}
    if packed_net:
        with tempfile.TemporaryDirectory() as folder:
            for name, net in (("converted_mindir", inference_net), ("packed_mindir", packed_net)):
                ms.export(net, images, file_name=os.path.join(folder, name), file_format="MINDIR")
                networks[name] = nn.GraphCell(ms.load(os.path.join(folder, name + ".mindir")))
    for net in networks.values():
        net.set_train(False)
        for _ in range(3):
            net(images).asnumpy()
    times = {name: [] for name in networks}
    for _ in range(max(30, args.steps)):
        for name, net in networks.items():
            times[name].append(median_seconds(lambda net=net: net(images).asnumpy(), 1))
    infer_time, twin_time = statistics.median(times["inference"]), statistics.median(times["float_twin"])
    result = {**training, "infer_images_per_s": args.batch_size / infer_time,
              "infer_speed_vs_float_twin": twin_time / infer_time}
    if packed_net:
        # Per-round time ratios: their median, and their quartiles as the spread.
        ratios = [packed / converted for packed, converted in zip(times["packed_mindir"], times["converted_mindir"])]
        result["packed_mindir_time_ratio"] = statistics.median(ratios)
        result["packed_mindir_time_ratio_quartiles"] = statistics.quantiles(ratios, n=4)[::2]
    return result


def run_worker(mode, bits, tree, optimizer, argv):
    """Each configuration in its own process, so that peak memory is its own."""
    command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", mode, str(bits), tree or "-", optimizer]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark of {mode} W{bits or 32} {optimizer} ({tree or 'this tree'}) failed:\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def configurations(args):
    """(tree label, tree, mode, bits, optimizer) of every process a round runs."""
    trees = [("current", None)] + ([("baseline", args.baseline_tree)] if args.baseline_tree else [])
    for mode in args.modes:
        for bits in [0] + args.bits:
            for label, tree in trees:
                # A float network has no logits to fuse; an older tree has no SlbMomentum.
                for optimizer in args.optimizers if bits and not tree else ["nn.Momentum"]:
                    yield label, tree, mode, bits, optimizer


def float_key(label, mode):
    """The float network each ratio is taken to: same tree, mode and round."""
    return label, mode, 0, "nn.Momentum"


def summarise(args, rounds):
    """Per configuration: the median over rounds of each figure, and of its ratio to the float
    network of the same tree, mode and round (with the rounds' range for the step-time ratio)."""
    rows = []
    for label, _, mode, bits, optimizer in configurations(args):
        measured = [measured[(label, mode, bits, optimizer)] for measured in rounds]
        floats = [measured[float_key(label, mode)] for measured in rounds]
        row = {"tree": label, "mode": mode, "bits": bits, "optimizer": optimizer}
        for key in ("step_s", "first_step_s", "peak_rss_gb", "build_peak_gb", "infer_images_per_s",
                    "infer_speed_vs_float_twin",
                    "packed_mindir_time_ratio"):
            if key in measured[0]:
                row[key] = statistics.median(result[key] for result in measured)
        for key in ("step_s", "first_step_s", "peak_rss_gb"):
            ratios = [result[key] / base[key] for result, base in zip(measured, floats)]
            row[key + "_ratio"] = statistics.median(ratios)
            row[key + "_ratio_range"] = (min(ratios), max(ratios))
        rows.append(row)
    return rows


def table(rows):
    lines = ["| code | mode | weights | optimizer | step (s) | step ratio (range) | peak memory (GB) | memory ratio | "
             "first step (s) | first-step ratio | inference (img/s) | inference vs float twin | "
             "packed MINDIR time vs converted MINDIR |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["step_s_ratio_range"]
        packed = f"{r['packed_mindir_time_ratio']:.2f}x" if "packed_mindir_time_ratio" in r else "-"
        inference = (f"{r['infer_images_per_s']:.0f} | {r['infer_speed_vs_float_twin']:.2f}x"
                     if "infer_images_per_s" in r else "- | -")
        lines.append(
            f"| {r['tree']} | {r['mode']} | {'W' + str(r['bits']) if r['bits'] else 'float'} | {r['optimizer']} "
            f"| {r['step_s']:.3f} | {r['step_s_ratio']:.2f}x ({low:.2f}-{high:.2f}) "
            f"| {r['peak_rss_gb']:.2f} | {r['peak_rss_gb_ratio']:.2f}x "
            f"| {r['first_step_s']:.1f} | {r['first_step_s_ratio']:.2f}x "
            f"| {inference} | {packed} |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        mode, bits, tree, optimizer = args.worker
        print(json.dumps(measure(mode, int(bits), args, None if tree == "-" else tree, optimizer)))
        return None
    rounds = []
    for round_index in range(args.rounds):
        measured = {}
        for label, tree, mode, bits, optimizer in configurations(args):
            print(f"round {round_index + 1}/{args.rounds}: {label} {mode} {'W' + str(bits) if bits else 'float'} "
                  f"{optimizer} ...", file=sys.stderr, flush=True)
            measured[(label, mode, bits, optimizer)] = run_worker(mode, bits, tree, optimizer, argv)
        rounds.append(measured)
    rows = summarise(args, rounds)
    print(f"ResNet18 width {args.width}, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"weight decay 1e-4; median of {args.steps} steps per process, median of {args.rounds} interleaved rounds; "
          f"{args.device_target}, {os.cpu_count()} CPU cores" +
          (f"; baseline: {args.baseline_tree}" if args.baseline_tree else ""))
    print(table(rows))
    save_results(args.json, args, rows=rows,
                 rounds=[[{"tree": key[0], "optimizer": key[3], **value} for key, value in measured.items()]
                         for measured in rounds])
    return rows


if __name__ == "__main__":
    main()
