"""Architecture measures of a source tree, for before/after comparisons of refactors.

    python scripts/architecture_measures.py [ROOT]      # ROOT defaults to the repository root

Prints: lines of library code (non-blank, liteframe_jax/), the ten longest functions, the modules outside tests/
that dispatch on the encoder kind (a comparison or membership test against "teacher", "teacher_wap" or
"student", or isinstance on the model classes), cross-module private uses (`from m import _x`, `module._x`), and
upward imports (the library importing configs, converters, experiments or testing).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ENCODER_WORDS = {"teacher", "teacher_wap", "student"}
MODEL_CLASSES = {"InternVL", "LiteFrameVLM", "InternVLConfig", "LiteFrameConfig"}
UPWARD = ("configs", "converters", "experiments", "testing")


def python_files(root: Path, top: str) -> list[Path]:
    return sorted(p for p in (root / top).rglob("*.py") if ".venv" not in p.parts)


def is_encoder_dispatch(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        for x in [node.left, *node.comparators]:
            if isinstance(x, ast.Constant) and x.value in ENCODER_WORDS:
                return True
            if isinstance(x, (ast.Tuple, ast.Set, ast.List)) and any(
                    isinstance(e, ast.Constant) and e.value in ENCODER_WORDS for e in x.elts):
                return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
        names = ast.walk(node.args[1]) if len(node.args) > 1 else []
        return any(isinstance(n, ast.Name) and n.id in MODEL_CLASSES for n in names)
    return False


def private_uses(tree: ast.AST) -> list[str]:
    modules = set()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module.startswith(("liteframe_jax", *UPWARD))):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"from {node.module} import {a.name}")
                else:
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(("liteframe_jax", *UPWARD)):
                    modules.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{node.value.id}.{node.attr}")
    return out


def main(root: Path) -> None:
    lib = python_files(root, "liteframe_jax")
    loc = sum(1 for p in lib for line in p.read_text().splitlines() if line.strip())
    funcs, dispatch, private, upward = [], {}, [], []
    outside_tests = [p for top in ("liteframe_jax", "configs", "converters", "experiments", "testing")
                     if (root / top).is_dir() for p in python_files(root, top)]
    for p in outside_tests:
        tree = ast.parse(p.read_text())
        rel = str(p.relative_to(root))
        n = sum(is_encoder_dispatch(node) for node in ast.walk(tree))
        if n:
            dispatch[rel] = n
        private += [f"{rel}: {u}" for u in private_uses(tree)]
        if p in lib:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    funcs.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                upward += [f"{rel}: {m}" for m in mods if m.split(".")[0] in UPWARD]
    print(f"library lines (non-blank): {loc} in {len(lib)} modules")
    print("ten longest library functions:")
    for n, name in sorted(funcs, reverse=True)[:10]:
        print(f"  {n:4d}  {name}")
    print(f"modules dispatching on the encoder kind: {len(dispatch)}")
    for rel, n in sorted(dispatch.items()):
        print(f"  {rel} ({n})")
    print(f"cross-module private uses: {len(private)}")
    for u in private:
        print(f"  {u}")
    print(f"upward imports from the library: {len(upward)}")
    for u in upward:
        print(f"  {u}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
