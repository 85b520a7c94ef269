"""The package's layers, enforced: a module imports only from its own layer and the layers below it (imports
inside functions count too), and there are no import cycles. A new module must be placed in LAYERS."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adapter4rec"

# lowest first; a module belongs to the group with the longest matching prefix
LAYERS = [
    ("base", ["errors", "atomic", "dist", "config", "progress", "ranking"]),  # config/: keys, checks, flags
    ("runtime data", ["data", "states"]),  # files, split, shards, text, images, the per-item state store
    ("models", ["models", "adapters"]),
    ("run", ["training.build", "checkpoint", "evaluate", "training.optim", "training.original", "run", "training.tb",
             "serving.new_items", "training.assemble"]),
    # one-time preparation and synthetic data: above everything a run imports, so no run depends on them
    ("preparation", ["data.prepare", "data.synthetic"]),
    ("entry points", ["training", "serving", "experiments", "__main__"]),  # training.train, serving.recommend, ...
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    names.pop("", None)
    return names


def layer_of(module: str) -> int:
    best, where = -1, None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, where = len(prefix), rank
    assert where is not None, f"adapter4rec.{module} is in no layer: add it to LAYERS in {__file__}"
    return where


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports (`from adapter4rec.x import y` names module x.y when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "adapter4rec":
            base = node.module.removeprefix("adapter4rec").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}".lstrip(".")
                found.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("adapter4rec.") for a in node.names if a.name.startswith("adapter4rec.")}
    found.discard("")
    return found


def test_every_import_goes_down_or_sideways():
    known = module_names()
    upward = []
    for module, path in sorted(known.items()):
        for target in sorted(imports_of(path, known)):
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_there_are_no_import_cycles():
    known = module_names()
    graph = {m: imports_of(p, known) & set(known) for m, p in known.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (cycle := visit(target, path + [module])):
                return cycle
        state[module] = 2
        return None
    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layer_check_can_fail(tmp_path):
    """The checker sees an upward import (a models module importing the training loop)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from adapter4rec.training.train import run\n")
    assert imports_of(probe, module_names()) == {"training.train"}
    assert layer_of("training.train") > layer_of("models.recommender")
