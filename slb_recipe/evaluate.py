"""Evaluate a trained checkpoint: top-1/top-5 of the quantized network and of its converted,
deployable form (plain convolutions with discrete weights), which must agree.

    python scripts/eval.py --config_path configs/resnet18_cifar10_config.yaml [--checkpoint_file_path CKPT]
"""
from slb_recipe.dataset import create_split
from slb_recipe.errors import RecipeError
from slb_recipe.metrics import evaluate
from slb_recipe.network import load_trained_network
from slb_recipe.runtime import script_main, setup_runtime


def run(config):
    """Returns {'checkpoint', 'quantized': metrics, 'converted': metrics or None for W32}."""
    setup_runtime(config)
    net, algo, path = load_trained_network(config)
    eval_data = create_split(config, False)
    result = {"checkpoint": path, "quantized": evaluate(net, eval_data, config), "converted": None}
    if algo is None:
        print(f"{config.quant_type} (float) network, {path}: {result['quantized']}")
        return result
    print(f"{config.quant_type} quantized network, {path}: {result['quantized']}")
    result["converted"] = evaluate(algo.convert(net), eval_data, config)
    print(f"{config.quant_type} converted network: {result['converted']}")
    if result["converted"] != result["quantized"]:
        raise RecipeError("the converted network does not reproduce the quantized network's accuracy")
    return result


def main(argv=None):
    return script_main(run, argv)
