"""Convert a trained checkpoint to the deployable network and export it as MINDIR.

    python scripts/export.py --config_path configs/resnet18_cifar10_config.yaml [--checkpoint_file_path CKPT]
"""
import os

import numpy as np
import mindspore as ms

from slb_recipe.common import load_trained_network, script_main, setup_runtime

FILE_EXTENSIONS = {"MINDIR": ".mindir"}


def run(config):
    """Returns the path of the exported file."""
    setup_runtime(config)
    net, algo, checkpoint = load_trained_network(config)
    deploy_net = net if algo is None else algo.convert(net)
    deploy_net.set_train(False)
    sample = ms.Tensor(np.zeros((1, 3, config.eval_image_size, config.eval_image_size), np.float32))
    os.makedirs(config.output_path, exist_ok=True)
    base = os.path.join(config.output_path, config.file_name)
    ms.export(deploy_net, sample, file_name=base, file_format=config.file_format)
    path = base + FILE_EXTENSIONS[config.file_format]
    print(f"exported {config.quant_type} network from {checkpoint} to {path}")
    return path


def main(argv=None):
    return script_main(run, argv)
