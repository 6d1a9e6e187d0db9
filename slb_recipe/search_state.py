"""Where the search of each quantized layer stands, read from a live network for the epoch line and
the figures.

Uses mindspore_slb's top-level names only, and only when called: under benchmarks/side_by_side.py's
Golden Stick shim, which serves those names, a network has no layer of this package's type, so it
has no searched layer and no decidedness. A quantized layer without logits (the straight-through
baseline) has no decidedness either.
"""
import numpy as np

import mindspore_slb


def quantized_layers(net):
    """(path, layer) of every quantized layer of net (mindspore_slb.SlbQuantLayer), in network order."""
    layer_type = mindspore_slb.SlbQuantLayer
    return [(path, cell) for path, cell in net.cells_and_names() if isinstance(cell, layer_type)]


def searched_layers(net):
    """(path, logits [K, *weight_shape] as NumPy, temperature) of every layer with logits."""
    found = []
    for path, layer in quantized_layers(net):
        logits = getattr(layer, "weight_logits", None)
        if logits is not None:
            temperature = float(layer.weight_quantizer().temperature.asnumpy().ravel()[0])
            found.append((path, logits.asnumpy().astype(np.float32), temperature))
    return found


def searching(net):
    """Whether some SLB layer of net still trains its soft weight (its schedule has not turned hard)."""
    return any(not layer.weight_quantizer().temperature_end_flag
               for _, layer in quantized_layers(net) if getattr(layer, "weight_logits", None) is not None)


def decidedness(logits, temperature):
    """The mean largest candidate probability of a layer's weights (mindspore_slb.decidedness)."""
    return mindspore_slb.decidedness(logits, temperature)


def decidedness_by_layer(net):
    """{path: mean largest candidate probability} of every searched layer, in network order."""
    return {path: decidedness(logits, temperature) for path, logits, temperature in searched_layers(net)}


def overall_decidedness(net):
    """The mean largest candidate probability over every searched weight of net, or None when it
    has none (a float network, the straight-through baseline, a Golden Stick network)."""
    layers = searched_layers(net)
    if not layers:
        return None
    total = sum(logits[0].size for _, logits, _ in layers)
    return sum(decidedness(logits, temperature) * logits[0].size for _, logits, temperature in layers) / total


def chosen_values_by_layer(net):
    """[(path, flat array of each weight's chosen candidate value, before any weight scale)]."""
    return [(path, np.asarray(layer.weight_quantizer().values, np.float32)[layer.weight_codes()].ravel())
            for path, layer in quantized_layers(net)]
