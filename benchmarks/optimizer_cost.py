"""What the optimizer's update alone costs per training step: float ResNet18 against SLB, whose
trainable parameters are K logits per weight (K = 2**bits).

    python benchmarks/optimizer_cost.py [--width 64] [--bits 1 2 4]

Times `nn.Momentum` (momentum 0.9, weight decay 1e-4, as the recipe) applying zero gradients to
every trainable parameter, GRAPH mode, median of 5 after one untimed update. At 4 bits this update
is a floor under the training step that no weight kernel can lower.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def update_ms(bits, width):
    """(trainable floats, median milliseconds of one optimizer update); bits 0 is the float network."""
    from mindspore import Tensor, nn  # pylint: disable=import-outside-toplevel

    from resnet_step import slb_resnet18  # pylint: disable=import-outside-toplevel  (beside this script)

    network, _ = slb_resnet18(bits, width)
    params = network.trainable_params()
    optimizer = nn.Momentum(params, 0.01, 0.9, weight_decay=1e-4)
    grads = tuple(Tensor(np.zeros(param.shape, np.float32)) for param in params)

    def update():
        optimizer(grads)
        params[-1].asnumpy()  # waits for the update

    update()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        update()
        times.append(time.perf_counter() - start)
    return sum(int(np.prod(param.shape)) for param in params), 1000 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4])
    args = parser.parse_args(argv)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    print("| weights | trainable floats (M) | optimizer update (ms) | ratio |\n|---|---|---|---|")
    base = None
    for bits in [0] + args.bits:
        count, milliseconds = update_ms(bits, args.width)
        base = base or milliseconds
        print(f"| {'W' + str(bits) if bits else 'float'} | {count / 1e6:.2f} | {milliseconds:.0f} "
              f"| {milliseconds / base:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
