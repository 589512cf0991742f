"""The package's shape (../shared/STYLE.md section 2): imports run one way, down the floor table; the command line
is read in cli/ only; no file or function outgrows its subject; and every public path keeps working."""
import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pydarknet"

# STYLE.md section 2's table, copied: floor -> its rooms, in order (a room imports only rooms on lower floors, or
# earlier rooms of its own floor; a package room's modules may import one another). `pydarknet` is the lazy API.
FLOORS = (
    ("errors", "settings", "jit", "files", "activations"),
    ("cfg", "image", "draw", "box", "sort", "nms_pairs", "nms", "metrics", "backend"),
    ("decode", "loss", "data"),
    ("layers",),
    ("policy", "weights", "network", "parallel"),
    ("gradients", "trackers", "trainer", "detector", "detector.pipeline"),      # detector/__init__: its docstring
    ("detector.test", "detector.valid", "detector.map", "detector.train", "detector.demo", "detector.anchors",
     "classifier", "export", "libdarknet", "tune"),
    ("cli", "__main__"),
)
ROOMS = {room: (floor, order) for floor, rooms in enumerate(FLOORS) for order, room in enumerate(rooms)}
FLOOR_0_MAY_IMPORT = {"numpy", "numba"}        # besides the standard library
CUPY_HOME = "backend.cuda.device"               # the only module that imports CuPy

# Functions over 80 lines that are one transcribed Darknet function each (STYLE.md section 7 allows those).
TRANSCRIBED = {"layers.region._region_loss": "region_layer.c forward_region_layer, after the activations",
               "layers.yolo._yolo_loss": "yolo_layer.c forward_yolo_layer, after the activations"}


def modules():
    """{dotted name under pydarknet: path} of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def room_of(name):
    """The floor table's room of a module: its own entry, or the package room it lies in ('' is pydarknet)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in ROOMS:
            return ".".join(parts[:k])
    return None


def imported(name, path):
    """(line, dotted module under pydarknet or a top-level third-party name) for each import in the file, those
    inside functions too (a lazy import is still a dependency)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                found.append((node.lineno, ".".join(top[1:]) if top[0] == "pydarknet" else "!" + top[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                base = [p for p in base if p]
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "pydarknet":
                module = ".".join(node.module.split(".")[1:])
            else:
                found.append((node.lineno, "!" + (node.module or "").split(".")[0]))
                continue
            for alias in node.names:        # `from . import x` imports the module x where there is one
                sub = f"{module}.{alias.name}" if module else alias.name
                found.append((node.lineno, sub if sub in MODULES else module))
    return found


def test_the_floor_table_names_every_module():
    homeless = [name for name in MODULES if name and room_of(name) is None]
    assert not homeless, f"modules the floor table does not place (add them to STYLE.md's table and here): {homeless}"


@pytest.mark.parametrize("name", [name for name in MODULES if name])
def test_imports_run_down_the_floor_table(name):
    path, room = MODULES[name], room_of(name)
    floor, order = ROOMS[room]
    wrong = []
    for line, target in imported(name, path):
        if target.startswith("!"):
            third_party = target[1:]
            if third_party == "cupy" and name != CUPY_HOME:
                wrong.append(f"line {line}: cupy (only {CUPY_HOME} imports it)")
            if floor == 0 and third_party not in FLOOR_0_MAY_IMPORT and not is_standard(third_party):
                wrong.append(f"line {line}: {third_party} on floor 0")
            continue
        if target == "":
            wrong.append(f"line {line}: pydarknet itself (import the module the name lives in)")
            continue
        target_room = room_of(target)
        if target_room == room:
            continue
        target_floor, target_order = ROOMS[target_room]
        if (target_floor, target_order) >= (floor, order) and not (target_floor < floor):
            wrong.append(f"line {line}: {target} (room {target_room}, floor {target_floor}) from room {room}, "
                         f"floor {floor}")
    assert not wrong, f"pydarknet/{path.relative_to(PACKAGE)} imports upward: {wrong}"


def is_standard(name):
    import sys
    return name in sys.stdlib_module_names or name == "__future__"


def test_no_import_circle_between_modules():
    """Within a package room the modules may import one another, but never in a circle."""
    graph = {name: {t for _, t in imported(name, path) if not t.startswith("!") and t and t != name}
             for name, path in MODULES.items() if name}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
            if nxt not in state:
                circle = visit(nxt, stack + [nxt])
                if circle:
                    return circle
        state[node] = "done"
        return None

    for name in graph:
        if name not in state:
            circle = visit(name, [name])
            assert circle is None, f"import circle: {' -> '.join(circle)}"


def outside_cli():
    return [(name, path) for name, path in MODULES.items() if room_of(name) not in ("cli", "__main__")]


def test_only_cli_reads_the_command_line():
    """No module outside cli/ reads sys.argv, takes an Args, defines a main or a command, or holds a usage text."""
    wrong = []
    for name, path in outside_cli():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "argv":
                wrong.append(f"{name}:{node.lineno}: sys.argv")
            elif isinstance(node, ast.FunctionDef) and node.name in ("main", "command"):
                wrong.append(f"{name}:{node.lineno}: def {node.name}")
            elif isinstance(node, ast.Name) and node.id == "Args":
                wrong.append(f"{name}:{node.lineno}: Args")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "usage: pydarknet" in node.value:
                wrong.append(f"{name}:{node.lineno}: a usage text")
    assert not wrong, wrong


def test_no_file_over_500_lines_and_no_long_function():
    long_files = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 500}
    assert not long_files, f"files over 500 lines: {long_files}"
    long_functions = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80 and f"{name}.{node.name}" not in TRANSCRIBED:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not long_functions, f"functions over 80 lines that are not one transcribed Darknet function: " \
                               f"{long_functions}"


# Every name of pydarknet.__all__ before the layout step, get_current_rate, and each module path and name the README
# shows (its Python, Video and ONNX sections): a literal list, so that a name dropped from the table fails here.
PUBLIC = [
    ("pydarknet", "CfgError"), ("pydarknet", "DarknetError"), ("pydarknet", "Detection"), ("pydarknet", "Detector"),
    ("pydarknet", "ImageError"), ("pydarknet", "Metadata"), ("pydarknet", "Network"), ("pydarknet", "WeightsError"),
    ("pydarknet", "backward_network"), ("pydarknet", "detect"), ("pydarknet", "do_nms_obj"),
    ("pydarknet", "do_nms_sort"), ("pydarknet", "forward_network"), ("pydarknet", "get_current_batch"),
    ("pydarknet", "get_current_rate"), ("pydarknet", "get_network_boxes"), ("pydarknet", "letterbox_image"),
    ("pydarknet", "load_image_color"), ("pydarknet", "load_meta"), ("pydarknet", "load_net"),
    ("pydarknet", "load_network"), ("pydarknet", "load_weights"), ("pydarknet", "network_predict"),
    ("pydarknet", "parse_network_cfg"), ("pydarknet", "save_weights"), ("pydarknet", "set_batch_network"),
    ("pydarknet", "train_network_datum"), ("pydarknet", "update_network"),
    ("pydarknet.detector.demo", "run_demo"), ("pydarknet.image", "letterbox_image"),
    ("pydarknet.image", "load_image_color"), ("pydarknet.cli", "run"), ("pydarknet.cli", "main"),
]


@pytest.mark.parametrize("module, name", PUBLIC)
def test_public_names_import_and_are_callable(module, name):
    assert callable(getattr(importlib.import_module(module), name))


def test_all_lists_the_public_names():
    import pydarknet
    assert sorted(name for module, name in PUBLIC if module == "pydarknet") == pydarknet.__all__


def test_private_names_stay_in_their_file():
    """A name that another module uses is public: no module imports, or reads through a module, a `_name` of
    another pydarknet module."""
    crossing = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pydarknet")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        crossing.append(f"{name}:{node.lineno}: imports {alias.name}")
                    modules.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossing.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not crossing, crossing
