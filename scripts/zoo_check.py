"""Quantize third-party CNNs end to end: mindcv 0.3.0's model zoo through apply, train, convert, export.

    pip install --no-deps mindcv==0.3.0      # a check of this repository, not a dependency
    python scripts/zoo_check.py [--models resnet18 densenet121 ...] [--bits 1] [--mode PYNATIVE]

For each architecture: build it (10 classes) and run it in float at the given image size (an
architecture failing there is skipped, with the reason), apply SLB, check that the training-mode
output is within 10x of the float network's (mean magnitude), take one training step, check that
every quantized layer's searched parameters moved and that the evaluation output is finite and
within 1000x of the float network's magnitude, convert and
check the converted network gives the same output, export MINDIR, reload it and check again.
Prints a table (layers: quantized / found of the registered types; |y|: largest output magnitude,
float and quantized after the step), the pass count and each failure with its reason; exits 1 when any failed.
"""
import argparse
import difflib
import os
import sys
import tempfile
import time
import traceback
import types

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from mindspore_slb import (WEIGHT_DTYPES, Conv2dSlbQuant, SlbQuantAwareTraining, deployable_conv2d,  # noqa: E402
                           is_quantized, register_layer)

# One or two small members of each mindcv family: plain and bottleneck residual, squeeze-excite,
# selective-kernel, split-attention, grouped (ResNeXt, ShuffleNet, RegNet), dense, dual-path,
# squeeze, mobile (MobileNet v1-v3, MnasNet, GhostNet, MixNet, EfficientNet), NAS (PNASNet,
# NASNet), multi-branch (GoogLeNet, Inception, Xception, HRNet), re-parameterised (RepVGG), and
# hybrid conv/attention (ConvNeXt, EdgeNeXt, MobileViT, PoolFormer, CMT, CoaT, PVTv2, HaloNet).
DEFAULT_MODELS = (
    "resnet18", "resnet50", "seresnet18", "skresnet18", "resnest14", "res2net50", "resnetv2_50",
    "BiT_resnet50", "resnext50_32x4d", "seresnext26_32x4d", "densenet121", "dpn92", "squeezenet1_0",
    "squeezenet1_1", "mobilenet_v1_025", "mobilenet_v2_035_96", "mobilenet_v3_small_075",
    "mobilenet_v3_large_075", "mnasnet_050", "ghostnet_050", "mixnet_s", "efficientnet_b0",
    "shufflenet_v1_g3_05", "shufflenet_v2_x0_5", "regnet_x_200mf", "regnet_y_200mf", "repvgg_a0",
    "googlenet", "inception_v3", "inception_v4", "xception", "hrnet_w32", "pnasnet", "nasnet_a_4x1056",
    "rexnet_09", "vgg11", "convnext_tiny", "convnextv2_atto", "edgenext_xx_small", "mobilevit_xx_small",
    "poolformer_s12", "cmt_tiny", "coat_lite_tiny", "pvt_v2_b0", "halonet_50t", "visformer_tiny",
)


def import_mindcv():
    """mindcv imports tqdm for its download progress bar only; with --no-deps it may be missing,
    and no weights are downloaded here, so a stand-in is enough."""
    try:
        import tqdm  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        stand_in = types.ModuleType("tqdm")
        stand_in.tqdm = lambda *args, **kwargs: None
        sys.modules["tqdm"] = stand_in
    import mindcv  # pylint: disable=import-outside-toplevel
    return mindcv


def register_weight_standardized_conv():
    """mindcv's BiT convolves with a standardized weight, ``(w - mean) / std`` per output channel:
    a Conv2d subclass overriding ``construct``, which the built-in Conv2d handler leaves in float.
    Its quantized form searches the standardized weight itself, so it starts from that weight and
    convolves like a plain Conv2d."""
    from mindcv.models.bit import StdConv2d  # pylint: disable=import-outside-toplevel

    class StdConv2dSlbQuant(Conv2dSlbQuant):
        def __init__(self, conv, num_bits, act_quantizer=None, weight_scale=False):
            weight = conv.weight.asnumpy()
            mean = weight.mean(axis=(1, 2, 3), keepdims=True)
            variance = weight.var(axis=(1, 2, 3), keepdims=True)
            super().__init__(conv, num_bits, act_quantizer, weight_scale,
                             weight=(weight - mean) / np.sqrt(variance + 1e-10))

    register_layer(StdConv2d, StdConv2dSlbQuant, deployable_conv2d)


class Skip(Exception):
    """The architecture does not run in float here: not a quantization failure."""


def reason(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


def check_model(mindcv, name, args, workdir):
    """Returns a dict of measurements; raises Skip, or any error as the failure's reason."""
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    images = Tensor(rng.normal(size=(args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32))
    labels = Tensor(rng.integers(0, 10, args.batch_size).astype(np.int32))
    try:
        network = mindcv.create_model(name, num_classes=10, pretrained=False)
        network.set_train(False)
        float_out = network(images).asnumpy()
        if not np.isfinite(float_out).all():
            raise ValueError("non-finite float output")
    except Exception as error:  # pylint: disable=broad-except
        raise Skip(f"float network fails: {reason(error)}") from error
    float_scale = float(np.abs(float_out).max())
    network.set_train(True)
    float_train_size = float(np.abs(network(images).asnumpy()).mean())

    algo = SlbQuantAwareTraining({"quant_dtype": WEIGHT_DTYPES[args.bits],
                                  "epoch_size": 10, "has_trained_epoch": 0,
                                  "enable_weight_scale": not args.no_scale, "enable_dense_quant": args.dense})
    network = algo.apply(network)
    layers = algo.layer_summary()
    network.set_train(True)
    # The start computes what the float network computes: no layer shrinks or blows up the signal.
    train_size = float(np.abs(network(images).asnumpy()).mean())
    if not float_train_size / 10 <= train_size <= float_train_size * 10:
        raise ValueError(f"training-mode output {train_size:.3g} against the float network's {float_train_size:.3g} "
                         "(mean magnitude): more than 10x apart")
    searched = {path: cell.searched_weight() for path, cell in network.cells_and_names() if is_quantized(cell)}
    before = {path: param.asnumpy().copy() for path, param in searched.items()}
    loss_net = nn.WithLossCell(network, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    train_step = nn.TrainOneStepCell(loss_net, nn.Momentum(network.trainable_params(), 0.01, 0.9))
    train_step.set_train(True)
    loss = float(train_step(images, labels).asnumpy())
    still = [path for path, param in searched.items() if np.array_equal(param.asnumpy(), before[path])]
    if still:
        raise ValueError(f"{len(still)} of {len(searched)} quantized layers' searched parameters did not move in "
                         f"one training step (first: {still[0]})")

    network.set_train(False)
    quant_out = network(images).asnumpy()
    quant_scale = float(np.abs(quant_out).max())
    if not np.isfinite(quant_out).all():
        raise ValueError(f"non-finite evaluation output after one step (loss {loss:.3g})")
    if quant_scale > 1000 * max(1.0, float_scale):
        raise ValueError(f"evaluation output {quant_scale:.3g} against the float network's {float_scale:.3g}")

    deployed = algo.convert(network)
    deployed_out = deployed(images).asnumpy()
    tolerance = 1e-5 * max(1.0, quant_scale)
    convert_diff = float(np.abs(deployed_out - quant_out).max())
    if convert_diff > tolerance:
        raise ValueError(f"converted output differs by {convert_diff:.3g}")

    path = os.path.join(workdir, name)
    ms.export(deployed, images, file_name=path, file_format="MINDIR")
    reloaded = nn.GraphCell(ms.load(path + ".mindir"))(images).asnumpy()
    os.remove(path + ".mindir")
    export_diff = float(np.abs(reloaded - quant_out).max())
    if export_diff > 1e-4 * max(1.0, quant_scale):
        raise ValueError(f"reloaded MINDIR output differs by {export_diff:.3g}")
    quantized = sum(1 for row in layers if row.bits != "float")
    return {"layers": f"{quantized}/{len(layers)}", "loss": f"{loss:.3g}",
            "train |y| ratio": f"{train_size / float_train_size:.2g}", "float |y|": f"{float_scale:.3g}",
            "quant |y|": f"{quant_scale:.3g}", "convert diff": f"{convert_diff:.1g}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="mindcv model names")
    parser.add_argument("--bits", type=int, choices=tuple(WEIGHT_DTYPES), default=1, help="weight bits")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--mode", choices=("PYNATIVE", "GRAPH"), default="PYNATIVE")
    parser.add_argument("--no_scale", action="store_true", help="Golden Stick's unscaled candidates")
    parser.add_argument("--dense", action="store_true", help="quantize nn.Dense layers too")
    args = parser.parse_args(argv)
    ms.set_context(mode=ms.PYNATIVE_MODE if args.mode == "PYNATIVE" else ms.GRAPH_MODE)
    mindcv = import_mindcv()
    known = mindcv.list_models()
    unknown = [name for name in args.models if name not in known]
    if unknown:  # a misspelt name must not pass as an architecture that fails in float
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=3)
            hints.append(f"{name} (did you mean {', '.join(close)}?)" if close else name)
        parser.error(f"--models: not a mindcv {mindcv.__version__} model: {'; '.join(hints)}")
    register_weight_standardized_conv()

    columns = ("layers", "loss", "train |y| ratio", "float |y|", "quant |y|", "convert diff")
    print(f"mindcv {mindcv.__version__}, W{args.bits}, {args.image_size}x{args.image_size}, {args.mode}, "
          f"scale {'off' if args.no_scale else 'on'}, Dense {'on' if args.dense else 'off'}")
    print("| model | result | seconds | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            start = time.time()
            try:
                row = check_model(mindcv, name, args, workdir)
                results[name] = ("pass", None)
            except Skip as skip:
                row, results[name] = {}, ("skip", str(skip))
            except Exception as error:  # pylint: disable=broad-except
                row, results[name] = {}, ("FAIL", reason(error))
                if os.environ.get("ZOO_CHECK_TRACEBACK"):
                    traceback.print_exc()
            print(f"| {name} | {results[name][0]} | {time.time() - start:.0f} | "
                  + " | ".join(row.get(column, "") for column in columns) + " |", flush=True)

    passed = [name for name, (status, _) in results.items() if status == "pass"]
    skipped = {name: why for name, (status, why) in results.items() if status == "skip"}
    failed = {name: why for name, (status, why) in results.items() if status == "FAIL"}
    print(f"\npassed {len(passed)} of {len(results) - len(skipped)} architectures that run in float "
          f"({len(skipped)} skipped)")
    for title, entries in (("skipped", skipped), ("failed", failed)):
        for name, why in entries.items():
            print(f"{title}: {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
