"""Export a trained checkpoint for deployment, with a size report.

    python scripts/export.py --config_path configs/resnet18_cifar10_config.yaml [--checkpoint_file_path CKPT]
        [--file_format MINDIR | MINDIR_PACKED | SLB | ONNX | ONNX_PACKED]

MINDIR (``<file_name>.mindir``): the converted network (discrete weights stored as float32).
MINDIR_PACKED (``<file_name>_packed.mindir``): a MINDIR whose quantized weights are bit-packed uint8
codes unpacked inside the graph. SLB (``<file_name>.slb``): mindspore_slb's packed file
(``mindspore_slb.load_packed`` loads it into the float ResNet18, ``mindspore_slb.slb_reader`` reads
it with NumPy alone). ONNX (``<file_name>.onnx``) and ONNX_PACKED (``<file_name>_packed.onnx``): the
converted network for onnxruntime, with float32 or bit-packed weights (``mindspore_slb.save_onnx``).
The formats and their writers: ``mindspore_slb.export`` (``register_export_format`` adds one). Beside the file,
``<file>.size.md`` lists what each layer costs, and the file's size against the float checkpoint.
"""
import os
import tempfile

import numpy as np
import mindspore as ms

from mindspore_slb import size_rows
from slb_recipe.errors import RecipeError
from slb_recipe.export_formats import EXPORT_FORMATS, FormatError
from slb_recipe.network import load_trained_network
from slb_recipe.quant_type import parse_quant_type
from slb_recipe.resnet import resnet18
from slb_recipe.runtime import script_main, setup_runtime

def float_checkpoint_bytes(config):
    """Size of the checkpoint of the same ResNet18 with float weights."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "float.ckpt")
        ms.save_checkpoint(resnet18(config.class_num, config.width, config.conv_init, config.dense_init), path)
        return os.path.getsize(path)


def size_report(rows, path, config):
    """Markdown: bytes of every stored parameter (``size_rows``), totals, and the file against the
    float checkpoint."""
    lines = [f"# Size of {os.path.basename(path)}", "",
             f"{config.quant_type} ResNet18 (width {config.width}, {config.class_num} classes), "
             f"file_format {config.file_format}.", "",
             "| layer | shape | bits | parameters | float bytes | stored bytes |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {'x'.join(map(str, row['shape']))} | {row['bits']} | {row['params']} "
                     f"| {row['float_bytes']} | {row['stored_bytes']} |")
    totals = {key: sum(row[key] for row in rows) for key in ("params", "float_bytes", "stored_bytes")}
    lines.append(f"| total | | | {totals['params']} | {totals['float_bytes']} | {totals['stored_bytes']} |")
    file_bytes, float_bytes = os.path.getsize(path), float_checkpoint_bytes(config)
    lines += ["", f"- stored parameters: {totals['stored_bytes']} bytes, "
                  f"1/{totals['float_bytes'] / totals['stored_bytes']:.2f} of their float32 size",
              f"- file: {file_bytes} bytes ({file_bytes / 2 ** 20:.2f} MiB)",
              f"- float checkpoint of the same network: {float_bytes} bytes ({float_bytes / 2 ** 20:.2f} MiB)",
              f"- file / float checkpoint: {file_bytes / float_bytes:.4f} (1/{float_bytes / file_bytes:.2f})"]
    return "\n".join(lines) + "\n"


def run(config):
    """Returns the path of the exported file; its size report is saved as ``<path>.size.md``."""
    export_format = EXPORT_FORMATS[config.file_format]
    if parse_quant_type(config.quant_type).is_float and export_format.packed:
        raise RecipeError(f"file_format {config.file_format} packs quantized weights; quant_type W32 has none "
                          "(use MINDIR)")
    try:
        os.makedirs(config.output_path, exist_ok=True)
    except OSError as error:
        raise RecipeError(f"output_path '{config.output_path}' is not a writable folder: {error.strerror}") from error
    setup_runtime(config)
    net, algo, checkpoint = load_trained_network(config)
    net.set_train(False)
    sample = ms.Tensor(np.zeros((1, 3, config.eval_image_size, config.eval_image_size), np.float32))
    path = os.path.join(config.output_path, config.file_name + export_format.ending)
    # Before writing: convert and packing turn the quantized layers into deployable ones in place.
    rows = None if algo is None else size_rows(net, packed=export_format.packed)
    try:
        export_format.write(net, (sample,), path)
    except FormatError as error:
        raise RecipeError(f"file_format {config.file_format}: {error}") from None
    print(f"exported {config.quant_type} network from {checkpoint} to {path}")
    if rows is not None:
        report = size_report(rows, path, config)
        with open(path + ".size.md", "w", encoding="utf-8") as stream:
            stream.write(report)
        print(report + f"saved {path}.size.md")
    return path


def main(argv=None):
    return script_main(run, argv)
