"""Cell surgery: swap layers of a network in place, at any depth, keeping parameter names."""
from mindspore import nn


def _set_child(parent, name, child):
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[int(name)] = child
    elif isinstance(parent, nn.CellDict):
        parent[name] = child
    else:
        setattr(parent, name, child)


def replace_cells(network, should_replace, make_replacement):
    """Replace every sub-cell ``c`` with ``should_replace(c)`` by ``make_replacement(c)``.

    The replacement takes over its predecessor's path, so its parameters are named
    ``<path>.<local name>`` like those of the cell it replaces, and no other parameter is renamed.

    Returns:
        list[str]: the paths of the replaced cells, in network order.
    """
    targets = [(path, cell) for path, cell in network.cells_and_names() if path and should_replace(cell)]
    parents = dict(network.cells_and_names())
    for path, cell in targets:
        parent_path, _, name = path.rpartition(".")
        replacement = make_replacement(cell)
        _set_child(parents[parent_path], name, replacement)
        for local_name, parameter in replacement.parameters_and_names():
            parameter.name = f"{path}.{local_name}"
    return [path for path, _ in targets]
