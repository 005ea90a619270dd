"""Layering: one direction of imports (CONTRIBUTING.md), checked from the code itself.

What counts as an import here: every ``import mdm.x`` / ``from mdm.x import y`` / relative import in a
file of the ``mdm`` package, read with ``ast`` (nothing is executed). ``from mdm.a import b`` is an edge
to the module ``mdm.a.b`` when that is a module, else to ``mdm.a``. Blocks under ``if TYPE_CHECKING:``
are left out (never run). Importing ``mdm.a.b`` also runs ``mdm/a/__init__.py``; that implicit edge is
not counted (a package importing its own submodules is how registries fill).

* module-level imports (what runs when a module is imported) must have no cycle at all;
* with the imports inside functions too (lazy imports), no cycle either (a lazy import is no licence to
  import upwards), and nothing under ``mdm.diffusion`` or ``mdm.models`` reaches the run loader or the
  training stack (``mdm.loading``, ``mdm.runprep``, ``mdm.train``, ``mdm.module``, ``mdm.pl``,
  ``mdm.preempt``): trained runs are handed to objectives;
* nothing in ``mdm/diffusion`` reads or writes a file, a stream, a run or data (:func:`io_uses`).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fresh import fresh_json

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mdm"

TRAINING_STACK = {"mdm.loading", "mdm.runprep", "mdm.train", "mdm.module", "mdm.pl", "mdm.preempt"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING")
        or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST, module_level: bool):
    """Import nodes of a file: at module level (incl. module-level if/try bodies), or everywhere."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if module_level and isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        ):
            if isinstance(node, ast.ClassDef):  # a class body runs at import
                stack.extend(node.body)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(module_level: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text()), module_level):
            if isinstance(node, ast.Import):
                deps.update(r for a in node.names if (r := _resolve(a.name)))
                continue
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mdm":
                continue
            for a in node.names:
                full = f"{target}.{a.name}"
                r = full if full in MODULES else _resolve(target)
                if r:
                    deps.add(r)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out, counter = set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_known_edges():
    """The reader finds what the files say (guards against a graph that is empty by mistake)."""
    top = import_graph(module_level=True)
    assert "mdm.diffusion.base" in top["mdm.diffusion.mdlm"]
    assert "mdm.diffusion.registry" in top["mdm.diffusion.mdlm"]
    assert "mdm.sweep.queue" in top["mdm.sweep.status"]
    assert "mdm.loading" in top["mdm.module"]
    assert "mdm.module" in top["mdm.train"]
    lazy = import_graph(module_level=False)
    assert "mdm.ccdd_encoder" in lazy["mdm.loading"] and "mdm.ccdd_encoder" not in top["mdm.loading"]


def test_no_import_cycle_at_module_level():
    assert cycles(import_graph(module_level=True)) == []


def test_no_import_cycle_with_lazy_imports():
    assert cycles(import_graph(module_level=False)) == []


def test_the_old_lazy_circles_run_one_way():
    """The two circles that lazy imports once closed: the export writer uses the run loader, which reads an
    export folder through mdm/export_folder.py; the datamodule uses the mixture loader, and both prepare
    through mdm/data/ensure.py."""
    graph = import_graph(module_level=False)
    assert {"mdm.loading", "mdm.export_folder"} <= graph["mdm.export"]
    assert "mdm.export_folder" in graph["mdm.loading"]
    assert "mdm.export" not in reachable(graph, "mdm.loading")
    assert {"mdm.data.mixture", "mdm.data.ensure"} <= graph["mdm.data.datamodule"]
    assert "mdm.data.ensure" in graph["mdm.data.mixture"]
    assert "mdm.data.datamodule" not in reachable(graph, "mdm.data.mixture")
    assert not {"mdm.data.datamodule", "mdm.data.mixture"} & reachable(graph, "mdm.data.ensure")


def test_preparing_data_and_reading_an_export_folder_leave_torch_out():
    """What the prepare path (and its worker processes) and an export folder's format import: no torch."""
    code = (
        "import json, sys\nimport mdm.data.ensure, mdm.export_folder\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'lightning', 'pytorch_lightning'))))\n"
    )
    assert fresh_json(code) == []


def test_maths_and_models_never_reach_the_loader_or_training_stack():
    graph = import_graph(module_level=False)
    for mod in MODULES:
        if mod.startswith(("mdm.diffusion", "mdm.models")):
            bad = reachable(graph, mod) & TRAINING_STACK
            assert not bad, f"{mod} reaches {sorted(bad)}"


def test_sweep_circle_is_gone():
    graph = import_graph(module_level=False)
    assert "mdm.sweep.launch" not in reachable(graph, "mdm.sweep.status")


def test_importing_the_maths_and_sweeps_leaves_lightning_out():
    """A fresh interpreter imports every module of these packages (the lm-eval adapter, an optional
    dependency's plug-in, aside) plus the run loader and the build step: no Lightning."""
    names = sorted(
        m
        for m in MODULES
        if m.startswith(("mdm.diffusion", "mdm.sampling", "mdm.eval", "mdm.sweep", "mdm.models"))
        and m != "mdm.eval.lm_eval_adapter"
    ) + [
        "mdm.loading",
        "mdm.runprep",
        "mdm.export",
        "mdm.export_folder",
        "mdm.commands.sweep",
        "mdm.ccdd_encoder",
        "mdm.run_config",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning'))))\n"
    )
    assert fresh_json(code) == []


# --- the maths does no I/O: files, runs and data are read outside mdm/diffusion and handed in -----------------
IO_MODULES = ("pathlib", "io", "os", "shutil", "tempfile", "pickle", "glob", "sys")
IO_MDM = (
    "mdm.data",
    "mdm.loading",
    "mdm.rundir",
    "mdm.io",
    "mdm.export",
    "mdm.export_folder",
    "mdm.run_config",
    "mdm.ccdd_encoder",
    "mdm.runprep",
    "mdm.train",
)
IO_CALLS = {"open", "print", "input"}
IO_METHODS = {
    "read_text",
    "write_text",
    "read_bytes",
    "write_bytes",
    "is_file",
    "is_dir",
    "mkdir",
    "unlink",
    "iterdir",
}
IO_TORCH = {"load", "save"}


def io_uses(source: str) -> list[str]:
    """What in ``source`` reads or writes files or streams (module docstring of this section)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = []
        for n in names:
            if n.split(".")[0] in IO_MODULES or n.startswith(tuple(f"{m}." for m in IO_MDM)) or n in IO_MDM:
                found.append(f"line {node.lineno}: import {n}")
                break  # one entry per import statement
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in IO_CALLS:
                found.append(f"line {node.lineno}: {f.id}(")
            elif isinstance(f, ast.Attribute) and f.attr in IO_METHODS:
                found.append(f"line {node.lineno}: .{f.attr}(")
            elif (
                isinstance(f, ast.Attribute)
                and f.attr in IO_TORCH
                and isinstance(f.value, ast.Name)
                and f.value.id == "torch"
            ):
                found.append(f"line {node.lineno}: torch.{f.attr}(")
    return found


def test_the_io_scan_finds_io():
    bad = (
        "import sys\nfrom pathlib import Path\nimport torch\nfrom mdm.data.datamodule import build_loader\n"
        "from mdm import loading\nfrom mdm.io import atomic_write_bytes\n"
        "def f(p):\n    open(p)\n    torch.save({}, p)\n    torch.load(p)\n    Path(p).read_text()\n"
        "    print('x')\n    return p.is_file()\n"
    )
    got = io_uses(bad)
    for what in (
        "import sys",
        "import pathlib",
        "import mdm.data.datamodule",
        "import mdm.loading",
        "import mdm.io",
        "open(",
        "torch.save(",
        "torch.load(",
        ".read_text(",
        "print(",
        ".is_file(",
    ):
        assert any(g.endswith(what) for g in got), (what, got)
    assert (
        io_uses(
            "import json\nimport torch\nx = torch.zeros(3).load_state_dict\nfrom mdm.config import Config\n"
        )
        == []
    )


def test_the_maths_does_no_io():
    """No file, stream, run or data access in mdm/diffusion/*.py: the run loader, CCDD's encoder source and
    statistics files (mdm/ccdd_encoder.py) and run configs (mdm/run_config.py) live outside and are handed in."""
    bad = {
        str(f.relative_to(REPO)): uses
        for f in sorted((PKG / "diffusion").glob("*.py"))
        if (uses := io_uses(f.read_text()))
    }
    assert bad == {}
