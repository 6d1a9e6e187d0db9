"""A network's parameters moved from Golden Stick's SLB layout to this package's, so that a comparison
can start both implementations from the same point (benchmarks/side_by_side.py --same_start,
benchmarks/step_equivalence.py).

Golden Stick replaces each convolution by a cell that keeps the original layer as `_handler` and the
layer's logits as `weight`, shaped [*weight_shape, K]; this package keeps them as `weight_logits`,
shaped [K, *weight_shape], on the layer at its original path. Every parameter SLB leaves alone
(BatchNorm, dense) has the same name in both. Imports neither implementation: a Golden Stick worker
uses it with Golden Stick's network, a worker of this package with its own.
"""
import numpy as np

from mindspore import Tensor

LOGITS_SUFFIX = ".weight_logits"


def _logit_cells(net):
    """(Golden Stick's logits parameter, original layer path) for every SLB layer of net."""
    found = []
    for _, cell in net.cells_and_names():
        handler = getattr(cell, "_handler", None)
        logits = getattr(cell, "weight", None)
        if handler is not None and logits is not None and len(logits.shape) == len(handler.weight.shape) + 1:
            # The original layer's weight keeps the name of its first place in the network: the
            # layer's own path, or (where the rewrite left nothing else behind) the path through
            # `_handler`.
            path = handler.weight.name.replace("._handler", "").rsplit(".", 1)[0]
            found.append((logits, path, handler.weight.name))
    return found


def our_names(net):
    """{Golden Stick parameter name: this package's name} for every parameter the two networks share:
    each SLB layer's logits, and the parameters SLB leaves alone. The original layers' float weights,
    which Golden Stick keeps but no longer uses, and its quantizers' own state are left out."""
    names, unused = {}, set()
    for logits, path, handler_weight in _logit_cells(net):
        names[logits.name] = path + LOGITS_SUFFIX
        unused.add(handler_weight)
    for param in net.get_parameters():
        if param.name not in names and param.name not in unused and "_weight_quantizer." not in param.name:
            names[param.name] = param.name
    return names


def in_our_layout(names, arrays):
    """Arrays keyed by Golden Stick parameter name, keyed by this package's names instead, the logits
    moved candidate-major; arrays of parameters `names` leaves out are dropped."""
    return {names[name]: np.moveaxis(array, -1, 0) if names[name].endswith(LOGITS_SUFFIX) else array
            for name, array in arrays.items() if name in names}


def golden_stick_state(net):
    """Every shared parameter of a Golden Stick SLB network, named and laid out as this package's."""
    return in_our_layout(our_names(net), {param.name: param.asnumpy() for param in net.get_parameters()})


def load_state(net, state):
    """Set net's parameters from `state` ({name: array}, as golden_stick_state gives); every name must
    be one of net's parameters, of the same shape."""
    params = {param.name: param for param in net.get_parameters()}
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ValueError(f"the state names {len(unknown)} parameters this network does not have, e.g. "
                         f"{unknown[:3]}: was it saved from the same model and quant_type?")
    for name, value in state.items():
        if tuple(params[name].shape) != tuple(value.shape):
            raise ValueError(f"the state holds {name} of shape {tuple(value.shape)}, this network "
                             f"{tuple(params[name].shape)}")
        params[name].set_data(Tensor(np.ascontiguousarray(value)))


def save_golden_stick_state(net, path):
    """Write golden_stick_state(net) to the .npz file `path`."""
    np.savez(path, **golden_stick_state(net))


def load_state_file(net, path):
    """load_state from a file save_golden_stick_state wrote."""
    with np.load(path) as stored:
        load_state(net, dict(stored))
