"""scripts/export.py writes each file format from a tiny recipe checkpoint, with its size report."""
import os

import mindspore as ms
import numpy as np
import onnxruntime
import pytest

from recipe_data import tiny_args

from mindspore_slb import load_packed
from slb_recipe import export
from slb_recipe import train
from slb_recipe.dataset import create_split
from slb_recipe.network import load_trained_network
from slb_recipe.runtime import setup_runtime
from slb_recipe.config import OPTIONS, load_config
from slb_recipe.resnet import resnet18


@pytest.fixture(scope="module", name="trained_args")
def fixture_trained_args(tmp_path_factory):
    args = tiny_args(tmp_path_factory.mktemp("w2a8"), quant_type="W2A8", epoch_size=1, warmup_epochs=0)
    train.main(args)
    return args


def converted_output(args):
    """The converted network's output on an evaluation batch, and that batch."""
    config = load_config(args)
    setup_runtime(config)
    net, algo, _ = load_trained_network(config)
    images = ms.Tensor(next(create_split(config, False).create_tuple_iterator(output_numpy=True))[0])
    return algo.convert(net)(images).asnumpy(), images, config


# One file_name for every format: each writes a file of its own, so exporting all of them keeps all.
@pytest.mark.parametrize("file_format, file", [("MINDIR", "net.mindir"), ("MINDIR_PACKED", "net_packed.mindir"),
                                               ("SLB", "net.slb"), ("ONNX", "net.onnx"),
                                               ("ONNX_PACKED", "net_packed.onnx")])
def test_export_writes_each_format_and_its_size_report(trained_args, file_format, file, capsys):
    args = trained_args + ["--file_format", file_format, "--file_name", "net"]
    path = export.main(args)
    assert os.path.basename(path) == file and os.path.isfile(path)
    expected, images, config = converted_output(args)
    if file_format == "SLB":
        loaded = load_packed(resnet18(config.class_num, config.width), path)
        np.testing.assert_array_equal(loaded(images).asnumpy(), expected)
    elif file_format.startswith("ONNX"):
        session = onnxruntime.InferenceSession(path)
        output = session.run(None, {session.get_inputs()[0].name: images[:1].asnumpy()})[0]
        np.testing.assert_allclose(output, expected[:1], atol=1e-5, rtol=0)
    else:
        graph = ms.nn.GraphCell(ms.load(path))
        np.testing.assert_allclose(graph(images[:1]).asnumpy(), expected[:1], atol=1e-5, rtol=0)
    printed = capsys.readouterr().out
    with open(path + ".size.md", encoding="utf-8") as stream:
        report = stream.read()
    assert report in printed
    # 588 two-bit codes take 147 bytes, the 4 candidate values 16; MINDIR keeps float32 weights
    stored = 2352 if file_format in ("MINDIR", "ONNX") else 147 + 16
    assert f"| conv1.weight | 4x3x7x7 | 2 | 588 | 2352 | {stored} |" in report
    assert f"- file: {os.path.getsize(path)} bytes" in report and "- file / float checkpoint: " in report


def test_packed_formats_refuse_the_float_baseline(tmp_path):
    with pytest.raises(SystemExit, match="file_format SLB packs quantized weights; quant_type W32 has none"):
        export.main(tiny_args(tmp_path, quant_type="W32", file_format="SLB"))


def test_onnx_export_of_a_network_mindspore_cannot_export_is_one_line(trained_args, monkeypatch):
    def unsupported(*_args, **_kwargs):
        raise RuntimeError("Can not find key InplaceAddExt in convert map. Exporting InplaceAddExt operator is not "
                           "yet supported.\n\n- C++ Call Stack: (For framework developers)\n...")
    monkeypatch.setattr(ms.onnx, "export", unsupported)
    with pytest.raises(SystemExit) as raised:
        export.main(trained_args + ["--file_format", "ONNX", "--file_name", "unsupported"])
    assert str(raised.value) == ("error: file_format ONNX: MindSpore cannot export ResNet to ONNX: it does not "
                                 "support the operator InplaceAddExt.")


def test_every_configurable_format_has_a_writer():
    assert tuple(export.EXPORT_FORMATS) == OPTIONS["file_format"].choices
