"""The package's imports, read with `ast`: no circles, and every import goes
down the layers.

From the bottom: box geometry (config, presets, anchors, boxes, matching,
targets, NMS) <- Keras layers, models, the loss and the learning-rate
schedules <- data, speed-ups and model loading (`load_model` registers every
serializable class) <- inference (images to detections) <- evaluation (runs
inference, scores it) <- training (the mAP callback evaluates) <- export,
visualize, the demo <- the command line.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_ssd"

#: The layer of each module or folder (longest prefix wins); higher layers
#: may import lower ones and their own layer, never a higher one.
LAYERS = {
    "keras_ssd.version": 0,
    # The one DeprecationWarning helper (standard library only).
    "keras_ssd.deprecation": 0,
    "keras_ssd.presets": 0,
    # The class lists of the public datasets (data only).
    "keras_ssd.classes": 0,
    "keras_ssd.config": 0,
    "keras_ssd.xla": 0,
    "keras_ssd.boxes": 0,
    "keras_ssd.anchors": 0,
    "keras_ssd.matching": 0,
    "keras_ssd.targets": 0,
    "keras_ssd.nms": 0,
    # Declared sizes of untrusted zip archives (.pth, .keras): zipfile only.
    "keras_ssd.archives": 0,
    # Reading .pth files into numpy (no Keras, no torch): file reading only.
    "keras_ssd.pth": 0,
    # Run folders, locks, args.yaml (os, yaml, numpy).
    "keras_ssd.runs": 0,
    # The metadata inside exported artifacts (json; onnx / TF flatbuffer tools).
    "keras_ssd.artifact_metadata": 0,
    "keras_ssd.layers": 1,
    "keras_ssd.models": 1,
    "keras_ssd.losses": 1,
    # The learning-rate schedules (Keras objects, loaded with saved optimizers).
    "keras_ssd.schedules": 1,
    "keras_ssd.data": 2,
    "keras_ssd.accel": 2,
    # load_model registers every serializable class (layers, models, the loss,
    # the schedules, the Winograd convolution) before Keras reads a file.
    "keras_ssd.saving": 2,
    # Prediction inputs as RGB frames (numpy, Pillow, PyAV; images via data).
    "keras_ssd.sources": 2,
    "keras_ssd.inference": 3,
    "keras_ssd.evaluation": 4,
    "keras_ssd.training": 5,
    "keras_ssd.export": 6,
    # int8 post-training quantization of exported artifacts (export uses it).
    "keras_ssd.quantize": 6,
    "keras_ssd.visualize": 6,
    "keras_ssd.demo": 6,
    "keras_ssd.cli": 7,
    "keras_ssd.__main__": 7,
    "keras_ssd": 8,  # the package's own __init__ re-exports everything
}


def module_name(path, root=PACKAGE):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root=PACKAGE):
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return files


def imported_modules(path, name, known):
    """The keras_ssd modules `path` imports, at module or function level.

    `import a.b.c` and `from a.b import c` run `a/__init__` and `a/b/__init__`
    first, so each import also depends on the packages above its target.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            while target.startswith("keras_ssd"):
                found.add(target)
                target = target.rpartition(".")[0]
    found.discard(name)
    return found


def import_graph(root=PACKAGE):
    files = package_modules(root)
    graph = {}
    for name, path in files.items():
        deps = imported_modules(path, name, files)
        # A package's __init__ importing its children is how packages are made,
        # and every module runs its parents' __init__ anyway.
        graph[name] = {d for d in deps
                       if not d.startswith(name + ".") and not name.startswith(d + ".")}
    return graph


def find_circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def layer_of(name):
    best = None
    for prefix, layer in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def test_the_package_has_no_import_circles():
    circles = find_circles(import_graph())
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_every_module_has_a_layer():
    unplaced = sorted(n for n in package_modules() if layer_of(n) is None)
    assert unplaced == [], f"add these modules to LAYERS: {unplaced}"


def test_imports_go_down_the_layers():
    upward = []
    for name, deps in import_graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(name):
                upward.append(f"{name} (layer {layer_of(name)}) imports {dep} "
                              f"(layer {layer_of(dep)})")
    assert upward == [], "\n".join(sorted(upward))


def test_the_geometry_layer_does_not_need_keras_layers_or_models():
    # presets is data: anything may read it, so it imports nothing of ours
    # but its own modules and the deprecation helper (standard library only).
    graph = import_graph()
    assert graph["keras_ssd.deprecation"] == set()
    for name in (n for n in graph if n.split(".")[:2] == ["keras_ssd", "presets"]):
        outside = {d for d in graph[name] if not d.startswith("keras_ssd.presets")}
        assert outside <= {"keras_ssd.deprecation"}, name
    assert graph["keras_ssd.classes"] == set()


def test_the_checker_finds_a_circle_and_an_upward_import(tmp_path):
    package = tmp_path / "keras_ssd"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "boxes.py").write_text("def f():\n    from keras_ssd.cli import run\n")
    (package / "cli" / "__init__.py").write_text("from keras_ssd.cli.run import main\n")
    (package / "cli" / "run.py").write_text("from keras_ssd import boxes\n")
    graph = import_graph(package)
    assert find_circles(graph) == [["keras_ssd.boxes", "keras_ssd.cli.run"]]
    assert "keras_ssd.cli.run" in graph["keras_ssd.boxes"]
    assert layer_of("keras_ssd.boxes") < layer_of("keras_ssd.cli.run")
