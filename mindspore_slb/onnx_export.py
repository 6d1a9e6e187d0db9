"""ONNX export of a trained quantized network, its quantized weights as float32 or bit-packed.

MindSpore exports the converted network (``mindspore.onnx.export``, opset 11);
for the packed form, each initializer that holds a quantized layer's weight is then replaced by the
layer's packed codes (uint8, ``8 // bits`` per byte, as in the ``.slb`` file), its K candidate
values and its per-channel scale, and a few standard operators rebuild the weight under the same
name: ``BitShift`` and ``Mod`` split each byte into its codes, ``Gather`` maps the codes to the
values, ``Mul`` applies the scale. Plain onnxruntime runs the file (it folds the rebuilding into
constants when the session is created), without mindspore_slb or MindSpore. Needs the ``onnx``
package (``pip install mindspore_slb[onnx]``).
"""
import os
import re
import tempfile

import mindspore as ms
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mindspore_slb.convert import convert_network
from mindspore_slb.codes import decode_weight, pack_codes
from mindspore_slb.packed_layers import require_quantized_weights

__all__ = ["OnnxExportError", "save_onnx", "exported_model", "pack_weights"]

_UNSUPPORTED = re.compile(r"Exporting (\S+) operator is not yet supported")


class OnnxExportError(ValueError):
    """A network that MindSpore cannot export to ONNX (the message names the operator)."""


def exported_model(network, inputs):
    """The ONNX model (``onnx.ModelProto``) of a deployable network, as ``mindspore.onnx.export`` writes it.

    An operator MindSpore cannot export is an ``OnnxExportError`` naming it. MindSpore writes
    ``Round`` with its ``decimals`` input, which ONNX's Round does not have; a zero one is dropped.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net")
        try:
            ms.onnx.export(network, *inputs, file_name=path)
        except RuntimeError as error:
            found = _UNSUPPORTED.search(str(error))
            if found is None:
                raise
            raise OnnxExportError(f"MindSpore cannot export {type(network).__name__} to ONNX: it does not "
                                  f"support the operator {found.group(1)}.") from None
        model = onnx.load(path + ".onnx")
    _drop_round_decimals(model.graph)
    return model


def _drop_round_decimals(graph):
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type != "Round" or len(node.input) != 2:
            continue
        decimals = constants.get(node.input[1])
        if decimals is None or decimals.size != 1 or decimals.item() != 0:
            raise OnnxExportError(f"ONNX's Round has no decimals: node '{node.name}' rounds to "
                                  f"{node.input[1]!r} decimals.")
        del node.input[1]
    _remove_unused_initializers(graph)


def _remove_unused_initializers(graph):
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _shared_constants(bits, added):
    """Names of the bit shifts ([1, 8 // bits] uint8) and the modulus (2**bits) for ``bits``, added once."""
    shifts, modulus = f"slb_shifts_{bits}bit", f"slb_modulus_{bits}bit"
    if shifts not in added:
        per_byte = 8 // bits
        added[shifts] = numpy_helper.from_array((np.arange(per_byte, dtype=np.uint8) * bits).reshape(1, per_byte),
                                                shifts)
        added[modulus] = numpy_helper.from_array(np.array([2 ** bits], np.uint8), modulus)
    return shifts, modulus


def _decode_nodes(name, layer, added):
    """Initializers (into ``added``) and nodes that rebuild ``layer``'s weight as the tensor ``name``."""
    shape, count, bits = layer.codes.shape, layer.codes.size, layer.bits
    shifts, modulus = _shared_constants(bits, added)

    def constant(suffix, array):
        added[name + suffix] = numpy_helper.from_array(array, name + suffix)
        return name + suffix

    # One row per byte, so that the shifts broadcast over it: [bytes, 1] >> [1, 8 // bits].
    codes = constant("_codes", pack_codes(layer.codes, bits).reshape(-1, 1))
    values = constant("_values", np.asarray(layer.values, np.float32))
    nodes = [helper.make_node("BitShift", [codes, shifts], [name + "_shifted"], direction="RIGHT"),
             helper.make_node("Mod", [name + "_shifted", modulus], [name + "_code"]),
             helper.make_node("Cast", [name + "_code"], [name + "_index"], to=TensorProto.INT64)]
    index = name + "_index"
    if count % (8 // bits):  # the last byte's padding codes are cut off
        nodes += [helper.make_node("Reshape", [index, constant("_flat", np.array([-1], np.int64))], [index + "_flat"]),
                  helper.make_node("Slice", [index + "_flat", constant("_start", np.array([0], np.int64)),
                                             constant("_count", np.array([count], np.int64))], [index + "_used"])]
        index += "_used"
    nodes += [helper.make_node("Reshape", [index, constant("_shape", np.array(shape, np.int64))], [index + "_shaped"])]
    weight = name if layer.scale is None else name + "_unscaled"
    nodes.append(helper.make_node("Gather", [values, index + "_shaped"], [weight], axis=0))
    if layer.scale is not None:
        scale = constant("_scale", layer.scale.astype(np.float32).reshape((-1,) + (1,) * (len(shape) - 1)))
        nodes.append(helper.make_node("Mul", [scale, weight], [name]))
    return nodes


def pack_weights(model, layers):
    """Replace, in ``model``, every float initializer equal to a quantized layer's weight by that layer's
    packed codes, values and scale and the nodes that rebuild it (under the initializer's name, so its
    users are unchanged). Weights are matched by value: an initializer equal to the decoded weight is
    that weight, whatever MindSpore named it.

    Returns:
        list: the names of the rebuilt initializers, in model order.
    """
    graph = model.graph
    by_shape = {}
    for layer in layers:
        by_shape.setdefault(tuple(layer.codes.shape), []).append(
            (layer, decode_weight(layer.codes, layer.values, layer.scale)))
    found, nodes, added, kept, rebuilt = set(), [], {}, [], []
    for tensor in graph.initializer:
        candidates = by_shape.get(tuple(tensor.dims), ()) if tensor.data_type == TensorProto.FLOAT else ()
        array = numpy_helper.to_array(tensor) if candidates else None
        layer = next((layer for layer, weight in candidates if np.array_equal(array, weight)), None)
        if layer is None:
            kept.append(tensor)
            continue
        found.add(layer.path)
        rebuilt.append(tensor.name)
        nodes += _decode_nodes(tensor.name, layer, added)
    missing = [layer.path for layer in layers if layer.path not in found]
    if missing:
        raise OnnxExportError(f"the ONNX graph holds no initializer equal to the weight of layer '{missing[0]}'.")
    del graph.initializer[:]
    graph.initializer.extend(kept + list(added.values()))
    # The rebuilding nodes go first: every user of a weight comes after them.
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    return rebuilt


def save_onnx(network, inputs, file_name, packed=True):
    """Export a trained quantized network as ONNX, in place converting it as ``convert`` does.

    Args:
        network (Cell): the network returned by ``SlbQuantAwareTraining.apply`` (trained); with
            ``packed=False`` also a float network.
        inputs (Tensor or tuple of Tensor): sample inputs, as for ``mindspore.export``.
        file_name (str): the file to write, ``.onnx`` included.
        packed (bool): store each quantized weight as its codes in ``bits`` bits, rebuilt in the graph;
            False: as float32 (the converted network as it is).

    Returns:
        str: ``file_name``.

    Raises:
        OnnxExportError: the network holds an operator MindSpore cannot export to ONNX (named).
    """
    if not isinstance(file_name, str) or not file_name:
        raise TypeError(f"'file_name' must be a non-empty str, but got {file_name!r}.")
    layers = require_quantized_weights(network) if packed else []
    deployed = convert_network(network)
    model = exported_model(deployed, inputs if isinstance(inputs, (tuple, list)) else (inputs,))
    if layers:
        pack_weights(model, layers)
        onnx.checker.check_model(model)
    temporary = file_name + ".partial"
    onnx.save(model, temporary)
    os.replace(temporary, file_name)
    return file_name
