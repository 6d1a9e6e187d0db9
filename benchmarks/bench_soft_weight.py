"""Micro-benchmark: SLB weight forward + backward, fused native kernel vs plain MindSpore ops.

Times one soft forward and the gradient w.r.t. the logits (GRAPH_MODE, CPU) for logits of shape
[K, N] with N = 11.2M (ResNet18's weight count), and prints the median over several runs after a
warm-up. Both are the package's own quantizer: on its fused path, and on the plain-ops path it
falls back to without a compiler (`ops.unstack` along the candidate axis, then the sigmoid form
for K = 2 or an elementwise max / exp / sum chain for K > 2).

    python benchmarks/bench_soft_weight.py [--weights 11200000] [--bits 1 2 4] [--repeats 7]
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
from mindspore_slb import SlbFakeQuantizerPerLayer  # noqa: E402


def quantizer(bits, fused):
    """The package's quantizer on its fused path, or on the plain-ops path it falls back to."""
    previous = os.environ.pop("MINDSPORE_SLB_NATIVE", None)
    if not fused:
        os.environ["MINDSPORE_SLB_NATIVE"] = "0"
    try:
        made = SlbFakeQuantizerPerLayer(bits)
    finally:
        os.environ.pop("MINDSPORE_SLB_NATIVE", None)
        if previous is not None:
            os.environ["MINDSPORE_SLB_NATIVE"] = previous
    if fused and not made.weight_is_fused:
        sys.exit("native kernel unavailable")
    made.set_temperature(3.0)
    return made


class ForwardBackward(nn.Cell):
    """Weight from trainable logits, and the logits' gradient for a given upstream gradient."""

    def __init__(self, weight_quantizer, logits):
        super().__init__()
        self.weight_quantizer = weight_quantizer
        self.logits = Parameter(logits, name="logits")
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.params = ms.ParameterTuple([self.logits])
        self.set_train(True)

    def forward(self):
        return self.weight_quantizer(self.logits)

    def construct(self, sens):
        return self.grad(self.forward, self.params)(sens)


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
    sens = Tensor(rng.standard_normal(args.weights, dtype=np.float32))
    print(f"SLB weight forward+backward, GRAPH_MODE, {args.weights} weights, "
          f"ms (median / min of {args.repeats})")
    print(f"{'K':>3} | {'native':>15} | {'plain ops':>15} | speed-up")
    for bits in args.bits:
        k = 2 ** bits
        logits = Tensor(rng.standard_normal((k, args.weights), dtype=np.float32))
        native = time_ms(ForwardBackward(quantizer(bits, fused=True), logits), (sens,), args.repeats)
        plain = time_ms(ForwardBackward(quantizer(bits, fused=False), logits), (sens,), args.repeats)
        print(f"{k:>3} | {native[0]:7.1f} / {native[1]:5.1f} | {plain[0]:7.1f} / {plain[1]:5.1f} | "
              f"{plain[0] / native[0]:5.1f}x")


if __name__ == "__main__":
    main()
