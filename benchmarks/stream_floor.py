"""The fused SLB kernel against the memory traffic it cannot avoid: how long its passes take over a
ResNet18's conv weights, and how long this machine takes only to move the same bytes.

Per weight and step, with K candidates: the forward reads K logits; the backward with the fused
update (SlbMomentum) reads the K logits and their K momentum values and writes both back. This script
times the kernel's two entry points (the native library the package builds, called directly on
arrays of that size, temperature 1: soft) and, over the same arrays, numpy passes that only read the
logits (a sum) and only rewrite logits and momentum in place (times 1), each split over the CPUs
the kernel uses, best of several runs. The difference is the kernel's arithmetic that its memory
traffic does not hide.

    python benchmarks/stream_floor.py [--weights 11200000] [--repeats 5] [--bits 1 2 4]
"""
import argparse
import ctypes
import os
import threading
import time

import numpy as np

from mindspore_slb import native

def _call(entry, arrays, dtypes):
    """entry(nparam, params, ndims, shapes, dtypes, ...) of the kernel library on numpy arrays."""
    count = len(arrays)
    shapes = [(ctypes.c_int64 * array.ndim)(*array.shape) for array in arrays]
    status = entry(count, (ctypes.c_void_p * count)(*[array.ctypes.data for array in arrays]),
                   (ctypes.c_int * count)(*[array.ndim for array in arrays]),
                   (ctypes.POINTER(ctypes.c_int64) * count)(*shapes),
                   (ctypes.c_char_p * count)(*[dtype.encode() for dtype in dtypes]), None, None)
    if status != 0:
        raise RuntimeError(f"the kernel refused its arguments (status {status})")


def _best_ms(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def _split(function, arrays, threads):
    """function(part) on each thread's share of every array (the arrays as flat views)."""
    parts = [[array.reshape(-1)[i * array.size // threads:(i + 1) * array.size // threads] for array in arrays]
             for i in range(threads)]
    workers = [threading.Thread(target=lambda share=share: [function(part) for part in share]) for share in parts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def measure(library, bits, dtype, weights, repeats, threads):
    """Milliseconds of the kernel's forward and fused backward, and of the read-only and in-place passes."""
    candidates = 2 ** bits
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 0.5, (candidates, weights)).astype(np.float32)
    logits = values if dtype == "float32" else (values.view(np.uint32) >> 16).astype(np.uint16)
    moment = np.zeros_like(logits)
    head = [logits, np.ones(1, np.float32), np.zeros(1, np.float32)]  # temperature 1, soft
    weight = np.empty(weights, np.float32)
    forward = lambda: _call(library.SlbSoftWeightForward, head + [weight], [dtype, "float32", "float32", "float32"])
    update_inputs = [np.full(weights, 1e-3, np.float32), moment, np.full(1, 0.01, np.float32),
                     np.zeros(1, np.int32), np.full(1, 0.9, np.float32), np.array([0.1, 1 / 1024], np.float32),
                     np.zeros(1, np.float32)]
    update_dtypes = [dtype, "float32", "float32", "float32", dtype, "float32", "int32", "float32", "float32",
                     "float32"]
    backward = lambda: _call(library.SlbSoftWeightBackwardUpdate, head + update_inputs, update_dtypes)
    # The same bytes as float32 values (bfloat16 pairs read as one float32: these passes only move them).
    logits_bytes, moment_bytes = (array.reshape(-1).view(np.float32) for array in (logits, moment))
    read = lambda: _split(np.add.reduce, [logits_bytes], threads)
    rewrite = lambda: _split(lambda part: np.multiply(part, 1, out=part), [logits_bytes, moment_bytes], threads)
    return {name: _best_ms(function, repeats)
            for name, function in (("forward", forward), ("read", read), ("backward", backward),
                                   ("rewrite", rewrite))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--weights", type=int, default=11_200_000, help="quantized weights (ResNet18 width 64)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4])
    args = parser.parse_args(argv)
    if args.weights < 1 or args.repeats < 1:
        parser.error(f"--weights and --repeats must be at least 1, got {args.weights} and {args.repeats}")
    path = native._library()  # pylint: disable=protected-access
    if path is None:
        parser.error("the native kernel could not be built (see the warning above): nothing to measure")
    library = ctypes.CDLL(path)
    threads = len(os.sched_getaffinity(0))
    print(f"{args.weights} weights, {threads} threads; milliseconds, best of {args.repeats}")
    for bits in args.bits:
        for dtype, size in (("float32", 4), ("bfloat16", 2)):
            logit_bytes = 2 ** bits * args.weights * size
            ms = measure(library, bits, dtype, args.weights, args.repeats, threads)
            print(f"W{bits} {dtype}: forward {ms['forward']:.1f} (reading {logit_bytes / 1e9:.2f} GB of logits: "
                  f"{ms['read']:.1f}); backward with the update {ms['backward']:.1f} (rewriting "
                  f"{4 * logit_bytes / 1e9:.2f} GB of logits and momentum in place: {ms['rewrite']:.1f})")


if __name__ == "__main__":
    main()
