"""Training-step time of SLB with and without the per-channel weight scale, alternated in one
process so the machine's load affects both alike.

    python benchmarks/scale_cost.py [--bits 1 4] [--width 32] [--batch_size 16] [--steps 10]
"""
import argparse
import os
import sys
import time

import numpy as np

import mindspore as ms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from resnet_step import momentum_train_step, random_batch, slb_resnet18  # noqa: E402  (beside this script)


def train_step(bits, scale, width):
    return momentum_train_step(slb_resnet18(bits, width, enable_weight_scale=scale)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bits", type=int, nargs="+", default=(1, 4), choices=(1, 2, 4))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"))
    args = parser.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "GRAPH" else ms.PYNATIVE_MODE)
    images, labels = random_batch(args.batch_size, args.image_size)
    print("| weights | step with scale (ms) | step without (ms) | ratio |")
    print("|---|---|---|---|")
    for bits in args.bits:
        steps = {scale: train_step(bits, scale, args.width) for scale in (True, False)}
        for step in steps.values():  # compile and warm up
            for _ in range(3):
                step(images, labels).asnumpy()
        times = {True: [], False: []}
        for _ in range(args.steps):
            for scale, step in steps.items():
                start = time.perf_counter()
                step(images, labels).asnumpy()
                times[scale].append(time.perf_counter() - start)
        with_scale, without = np.median(times[True]) * 1000, np.median(times[False]) * 1000
        print(f"| W{bits} | {with_scale:.1f} | {without:.1f} | {with_scale / without:.3f} |", flush=True)


if __name__ == "__main__":
    main()
