"""Cell surgery: swap layers of a network in place, at any depth and in any container.

A child Cell is found through its parent's registered children (``_cells``), whatever the parent
is: a plain Cell attribute, a ``SequentialCell`` built from a list or an ``OrderedDict``, a
``CellList``, a ``CellDict``, nested to any depth. One Cell object reachable under several paths
(shared) gets one replacement, put under every path, so the network keeps one set of parameters.
"""
import time

import mindspore as ms
from mindspore import nn

__all__ = ["replace_cells", "renew_compiled_graphs"]


# MindSpore's mixed precision (to_float, AMP O2 / O3) is a flag on each Cell that casts the Cell's
# inputs. A replacement is a new Cell without it: under float16 its float32 weight would meet a
# float16 input, and GRAPH mode and export fail.
_PRECISION_FLAGS = ("fp16", "bf16", "fp32")
# A layer built in a low precision (``nn.Conv2d(..., dtype=ms.float16)``) says so by its weight's
# dtype, not by a flag; its replacement gets the flag, so it computes in that precision too.
_WEIGHT_DTYPE_FLAGS = {ms.float16: "fp16", ms.bfloat16: "bf16"}


def _carry_precision(cell, replacement):
    """Give ``replacement`` and its children the precision ``cell`` ran at."""
    precision = {name: value for name, value in cell.get_flags().items() if name in _PRECISION_FLAGS}
    built_in = _WEIGHT_DTYPE_FLAGS.get(getattr(getattr(cell, "weight", None), "dtype", None))
    if not precision and built_in:
        precision = {built_in: True}
    if precision:
        replacement.add_flags_recursive(**precision)
    return replacement


def _set_child(parent, name, child):
    parent.insert_child_to_cell(name, child)
    if isinstance(parent, nn.SequentialCell):
        # SequentialCell runs its cached list, not its registered children.
        parent.cell_list = list(parent._cells.values())  # pylint: disable=protected-access


def replace_cells(network, make_replacement):
    """Replace sub-cells of ``network`` (and ``network`` itself) as ``make_replacement`` decides.

    ``make_replacement(cell, path)`` returns the Cell to put in place of ``cell`` or None to keep
    it; it is called once per Cell object, with the first path it is reachable under (``""`` for
    ``network`` itself), in ``cells_and_names`` order. A replaced cell's children are not visited.
    The replacement's parameters are named ``<that path>.<local name>``, as the replaced cell's
    were; no other parameter is renamed. The replacement runs at the replaced cell's precision
    (its ``to_float`` / AMP flags, or the float16 / bfloat16 dtype it was built in).

    Returns:
        tuple(Cell, dict): the network (the replacement when ``network`` itself was replaced) and
        ``{first path: replacement}`` in network order.
    """
    root_replacement = make_replacement(network, "")
    if root_replacement is not None:
        return _carry_precision(network, root_replacement), {"": root_replacement}
    decided = {id(network): None}  # id(cell) -> its replacement, or None to keep it
    replaced = {}

    def visit(parent, prefix):
        for name, child in list(parent._cells.items()):  # pylint: disable=protected-access
            if child is None:
                continue
            path = f"{prefix}.{name}" if prefix else name
            first_visit = id(child) not in decided
            if first_visit:
                replacement = make_replacement(child, path)
                decided[id(child)] = None if replacement is None else _carry_precision(child, replacement)
            replacement = decided[id(child)]
            if replacement is None:
                if first_visit:
                    visit(child, path)
                continue
            if first_visit:
                for local_name, parameter in replacement.parameters_and_names():
                    parameter.name = f"{path}.{local_name}"
                replaced[path] = replacement
            _set_child(parent, name, replacement)

    visit(network, "")
    if replaced:
        renew_compiled_graphs(network)
    return network, replaced


def renew_compiled_graphs(network):
    """Make the next call of ``network``, or of any Cell in it, compile its current structure.

    In GRAPH mode MindSpore keys a Cell's compiled graph by the Cell's creation time and id, not by
    its children: after surgery, a network that had run before would run its old graph (with the
    replaced layers) again. A new creation time gives every Cell in it a new key.
    """
    created = time.time_ns()
    for _, cell in network.cells_and_names():
        object.__setattr__(cell, "_create_time", created)
