"""The import layers (STYLE.md, ``[tool.importlinter]`` in pyproject.toml) hold, and the checks can fail.

- ``lint-imports`` keeps the layers contract: a module imports only from the layers below it
  (version < envs < nn < config < algos < train < analysis < cli), function-level imports included;
- no import cycles between fastmarl's modules;
- only the package face (``fastmarl/__init__.py``) and the top-level CLI import ``fastmarl`` itself: a
  module inside imports the module that defines what it needs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_layers_contract_is_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def _toy_package(tmp_path: Path, back_edge: bool) -> Path:
    pkg = tmp_path / "toypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text("def f():\n    from toypkg import train  # noqa\n" if back_edge else "X = 1\n")
    (pkg / "train.py").write_text("from toypkg import envs\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_package = "toypkg"\n\n[[tool.importlinter.contracts]]\nname = "toy layers"\n'
        'type = "layers"\nlayers = ["toypkg.train", "toypkg.envs"]\n')
    return tmp_path


def test_the_layers_contract_catches_a_function_level_back_edge(tmp_path):
    ok = _lint(_toy_package(tmp_path / "ok", back_edge=False), tmp_path / "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _lint(_toy_package(tmp_path / "bad", back_edge=True), tmp_path / "bad")
    assert bad.returncode != 0 and "BROKEN" in bad.stdout and "toypkg.envs -> toypkg.train" in bad.stdout, bad.stdout


def import_cycles(package: str) -> list[list[str]]:
    """The strongly connected components (size > 1) of ``package``'s module import graph (Tarjan), without
    ``if TYPE_CHECKING:`` imports (annotations only: they never run)."""
    graph = grimp.build_graph(package, cache_dir=None, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    succ = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (~70)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles():
    # the face imports everything and nothing imports it (test below), so it cannot close a cycle
    assert import_cycles("fastmarl") == []


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("def g():\n    from cyclepkg import a  # noqa\n")
    (pkg / "c.py").write_text("from cyclepkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclepkg") == [["cyclepkg.a", "cyclepkg.b"]]


FACE_USERS = {"fastmarl/__init__.py", "fastmarl/cli.py"}


def face_imports(root: Path, package: str = "fastmarl") -> list[str]:
    """``file:line`` of every ``import fastmarl`` / ``from fastmarl import <not a module>`` outside FACE_USERS."""
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in FACE_USERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Import) and any(a.name == package for a in node.names):
                bad.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == package and node.level == 0:
                if any(not (root / package / a.name).is_dir() and not (root / package / f"{a.name}.py").is_file()
                       for a in node.names):
                    bad.append(f"{rel}:{node.lineno}")
    return bad


def test_no_module_imports_the_package_face():
    assert face_imports(ROOT) == []


def test_the_face_check_finds_a_face_import(tmp_path):
    (tmp_path / "fastmarl" / "envs").mkdir(parents=True)
    (tmp_path / "fastmarl" / "__init__.py").write_text("from fastmarl.envs import make\n")
    (tmp_path / "fastmarl" / "envs" / "__init__.py").write_text("def make(): ...\n")
    (tmp_path / "fastmarl" / "ok.py").write_text("from fastmarl import envs\n")
    (tmp_path / "fastmarl" / "bad.py").write_text("import torch\n\n\ndef f():\n    import fastmarl\n")
    (tmp_path / "fastmarl" / "bad2.py").write_text("from fastmarl import make\n")
    assert face_imports(tmp_path) == ["fastmarl/bad.py:5", "fastmarl/bad2.py:1"]
