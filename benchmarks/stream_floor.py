"""The memory-traffic floor of SLB's fused training step: how long this machine takes to stream the
bytes that step must read and write for the logits, whatever the kernel does with them.

Per weight and step, with K candidates: the forward reads K logits; the backward with the fused
update (SlbMomentum) reads the K logits again and their K momentum values, and writes both back.
That is 5 * K values, 4 bytes each in float32 (2 in bfloat16). This script measures the machine's
streaming rate (a scaled copy with numpy, read and write bytes counted, the best of several runs on
1 and on 2 threads) and prints the time those bytes take for ResNet18's conv weights at width 64.

    python benchmarks/stream_floor.py [--weights 11200000] [--repeats 5] [--stream_values 180000000]
"""
import argparse
import threading
import time

import numpy as np

# Logit values streamed per candidate and weight in one fused step (see the module docstring).
PASSES = 5


def streaming_rate(values, threads, repeats):
    """Best read+write bytes per second of out = 0.9 * source over `values` float32, split over threads."""
    source = np.ones(values, np.float32)
    out = np.empty_like(source)

    def scale(low, high):
        np.multiply(source[low:high], 0.9, out=out[low:high])

    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=scale, args=(i * values // threads, (i + 1) * values // threads))
                   for i in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--weights", type=int, default=11_200_000, help="quantized weights (ResNet18 width 64)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream_values", type=int, default=180_000_000,
                        help="float32 values copied to measure the rate (far beyond the caches)")
    args = parser.parse_args(argv)
    rate = max(streaming_rate(args.stream_values, threads, args.repeats) for threads in (1, 2))
    print(f"streaming rate (read + write bytes): {rate / 1e9:.1f} GB/s")
    for bits in (1, 2, 4):
        candidates = 2 ** bits
        for dtype, size in (("float32", 4), ("bfloat16", 2)):
            streamed = PASSES * candidates * size * args.weights
            print(f"W{bits} {dtype}: {streamed / 1e9:.2f} GB a step, at least {1e3 * streamed / rate:.0f} ms")


if __name__ == "__main__":
    main()
