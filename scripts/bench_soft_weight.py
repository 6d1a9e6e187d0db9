"""Micro-benchmark: SLB weight forward + backward, fused native kernel vs plain MindSpore ops.

Times one soft forward and the gradient w.r.t. the logits (GRAPH_MODE, CPU) for logits of shape
[K, N] with N = 11.2M (ResNet18's weight count), and prints the median over several runs after a
warm-up. The plain-ops version is the best known alternative: `ops.unstack` along the candidate
axis, then the tanh form (K = 2) or an elementwise max / exp / sum chain (K > 2).

    python scripts/bench_soft_weight.py [--weights 11200000] [--bits 1 2 4] [--repeats 7]
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mindspore_slb.native import soft_weight_op  # noqa: E402


class PlainSoftWeight(nn.Cell):
    """SLB soft weight from plain ops over unstacked candidate rows."""

    def __init__(self, num_candidates):
        super().__init__()
        self.values = [float(v) for v in np.linspace(-1.0, 1.0, num_candidates)]

    def construct(self, logits, temperature, hard):
        rows = ops.unstack(logits, 0)
        if len(rows) == 2:
            return ops.tanh(temperature * (rows[1] - rows[0]) * 0.5)
        top = rows[0]
        for row in rows[1:]:
            top = ops.maximum(top, row)
        total = 0.0
        weighted = 0.0
        for row, value in zip(rows, self.values):
            e = ops.exp(temperature * (row - top))
            total = total + e
            weighted = weighted + e * value
        return weighted / total


class NativeSoftWeight(nn.Cell):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def construct(self, logits, temperature, hard):
        return self.op(logits, temperature, hard)


class ForwardBackward(nn.Cell):
    """Weight from trainable logits, and the logits' gradient for a given upstream gradient."""

    def __init__(self, weight_fn, logits):
        super().__init__()
        self.weight_fn = weight_fn
        self.logits = Parameter(logits, name="logits")
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.params = ms.ParameterTuple([self.logits])

    def forward(self, temperature, hard):
        return self.weight_fn(self.logits, temperature, hard)

    def construct(self, temperature, hard, sens):
        return self.grad(self.forward, self.params)(temperature, hard, sens)


def time_ms(net, args, repeats):
    """Median and minimum wall time of one call, in ms."""
    for _ in range(2):  # compile + warm-up
        net(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        # asnumpy() waits for the result (ms.runtime.synchronize() rejects the CPU device);
        # on CPU it returns a view, so no copy is timed.
        net(*args)[0].asnumpy()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=11_200_000)
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    temperature = Tensor(np.array([3.0], np.float32))
    hard = Tensor(np.array([0.0], np.float32))
    sens = Tensor(rng.standard_normal(args.weights, dtype=np.float32))
    print(f"SLB weight forward+backward, GRAPH_MODE, {args.weights} weights, "
          f"ms (median / min of {args.repeats})")
    print(f"{'K':>3} | {'native':>15} | {'plain ops':>15} | speed-up")
    for bits in args.bits:
        k = 2 ** bits
        op = soft_weight_op(k)
        if op is None:
            sys.exit("native kernel unavailable")
        logits = Tensor(rng.standard_normal((k, args.weights), dtype=np.float32))
        inputs = (temperature, hard, sens)
        native = time_ms(ForwardBackward(NativeSoftWeight(op), logits), inputs, args.repeats)
        plain = time_ms(ForwardBackward(PlainSoftWeight(k), logits), inputs, args.repeats)
        print(f"{k:>3} | {native[0]:7.1f} / {native[1]:5.1f} | {plain[0]:7.1f} / {plain[1]:5.1f} | "
              f"{plain[0] / native[0]:5.1f}x")


if __name__ == "__main__":
    main()
