"""The package's shape: no import cycle, no long module, dask behind its route."""

import ast
from pathlib import Path

import skem

PACKAGE = Path(skem.__file__).parent


def modules():
    """``{dotted name: path}`` of every module of skem."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("skem", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name, path, known):
    """The skem modules ``name`` imports, anywhere in it (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = (
                (base + "." + node.module if node.module else base) if node.level else node.module
            )
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in known and target != name}


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    # a package's __init__ re-exporting its modules is not a cycle of logic:
    # only cycles among modules that are not packages count
    graph = {
        name: {t for t in targets if known[t].name != "__init__.py"}
        for name, targets in graph.items()
        if known[name].name != "__init__.py"
    }
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_is_over_700_lines_and_the_cli_over_300():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > 700} == {}
    assert lengths["skem.cli"] <= 300
    # the proof that a model is its maths: the Bernoulli mixture
    assert lengths["skem.mixture._bernoulli"] <= 200


def test_dask_is_named_in_code_only_by_its_route():
    """Outside ``_core/_routes.py`` and ``_core/_dask.py`` no code imports dask or
    mentions it outside docstrings (error messages included)."""
    naming = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = ""
            if isinstance(node, ast.Import):
                text = " ".join(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                text = node.module or ""
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = "" if id(node) in docstrings else node.value
            if "dask" in text.lower():
                naming.add(name)
    assert naming <= {"skem._core._routes", "skem._core._dask"}
