"""The package's module structure: every module imports, none takes part in an import cycle, each
says what it offers in ``__all__``, and the modules documented as readable without MindSpore import
only NumPy and the standard library."""
import ast
import importlib
import os
import sys

import pytest

import mindspore_slb

PACKAGE_DIR = os.path.dirname(os.path.abspath(mindspore_slb.__file__))


def module_files():
    """module name -> source file of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for file in files:
            if not file.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(folder, file), os.path.dirname(PACKAGE_DIR))[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = os.path.join(folder, file)
    return found


MODULES = module_files()


def imported_modules(name):
    """Every module this one imports, at its top or inside a function (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(open(MODULES[name], encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                package = name.split(".") if MODULES[name].endswith("__init__.py") else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            # "from package import module" imports that module
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def package_edges(name):
    """The package's modules ``name`` imports: each imported module and the packages above it."""
    edges = set()
    for imported in imported_modules(name):
        parts = imported.split(".")
        for end in range(1, len(parts) + 1):
            candidate = ".".join(parts[:end])
            if candidate in MODULES and candidate != name:
                edges.add(candidate)
    return edges


def test_the_module_list_holds_the_deployment_modules():
    assert {"mindspore_slb.codes", "mindspore_slb.slb_reader", "mindspore_slb.packing", "mindspore_slb.packed_layers",
            "mindspore_slb.export", "mindspore_slb.onnx_export", "mindspore_slb.quant_dtypes"} <= set(MODULES)


def test_no_module_takes_part_in_an_import_cycle():
    graph = {name: package_edges(name) - {"mindspore_slb"} for name in MODULES}
    # The package's __init__ imports no module of its own (its names are looked up on first use).
    assert package_edges("mindspore_slb") == set()
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            cycle = on_path[on_path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        on_path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports_and_defines_all_with_names_it_has(name):
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{name} defines no __all__"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ names one twice"
    missing = [public for public in module.__all__ if not hasattr(module, public)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_the_top_level_names_are_the_modules_public_names():
    for public in mindspore_slb.__all__:
        home = mindspore_slb._HOMES[public]  # pylint: disable=protected-access
        assert public in importlib.import_module(home).__all__, f"{public} is not in {home}.__all__"


@pytest.mark.parametrize("name", ["mindspore_slb.codes", "mindspore_slb.slb_reader"])
def test_the_packed_file_modules_need_numpy_and_the_standard_library_only(name):
    allowed = set(sys.stdlib_module_names) | {"numpy", "codes"}  # codes: slb_reader copied beside codes.py
    outside = sorted(imported for imported in imported_modules(name) if imported.split(".")[0] not in allowed
                     and imported.split(".")[:2] != ["mindspore_slb", "codes"])
    assert not outside, f"{name} imports {outside}"


def test_the_bit_widths_agree():
    from mindspore_slb.codes import SUPPORTED_BITS  # pylint: disable=import-outside-toplevel
    assert tuple(mindspore_slb.WEIGHT_DTYPES) == SUPPORTED_BITS
    assert {bits: dtype.name for bits, dtype in mindspore_slb.WEIGHT_DTYPES.items()} == {1: "INT1", 2: "INT2", 4: "INT4"}


def test_the_golden_stick_shim_serves_the_names_the_recipe_trains_with():
    """benchmarks/golden_stick_shim is a `mindspore_slb` served by Golden Stick; the recipe's training
    path (network, callbacks, search_state) reads `mindspore_slb.<name>` from whichever it gets."""
    root = os.path.dirname(PACKAGE_DIR)
    with open(os.path.join(root, "benchmarks", "golden_stick_shim", "mindspore_slb", "__init__.py"),
              encoding="utf-8") as stream:
        shim = ast.parse(stream.read())
    served = {alias.asname or alias.name for node in shim.body if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in node.names}
    served |= {target.id for node in shim.body if isinstance(node, ast.Assign) for target in node.targets}
    served |= {node.name for node in shim.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    needed = set()
    for module in ("network", "callbacks", "search_state"):
        with open(os.path.join(root, "slb_recipe", module + ".py"), encoding="utf-8") as stream:
            tree = ast.parse(stream.read())
        needed |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Name) and node.value.id == "mindspore_slb"}
    # decidedness is read only for layers of this package's type, which a Golden Stick network has none of.
    needed.discard("decidedness")
    assert needed and needed <= served, f"the shim lacks {sorted(needed - served)}"
