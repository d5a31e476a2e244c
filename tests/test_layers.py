"""The package's layers (DESIGN.md): each module imports only from the layers below it."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "bnlib"
# lower number = lower layer; a module may import only modules of its own layer or below
LAYER = {"functional": 0, "checksums": 0, "peak": 0, "batched": 1, "norms": 1, "data": 1, "config": 1, "models": 2,
         "checkpoint": 3, "train": 3, "theory": 3, "probes": 3, "profiles": 4, "runs": 4, "scaleout": 4, "claims": 5,
         "plots": 5, "page": 5, "chapters": 6, "book": 7, "summary": 7, "answers": 7, "plan": 7, "pagecheck": 7,
         "__main__": 7, "__init__": 0}


def layer_of(module: str) -> int:
    return LAYER[module.split(".")[0]]


def bnlib_imports(path: Path) -> set[str]:
    """bnlib modules imported by ``path`` (relative imports resolved), at any depth of the file."""
    rel = path.relative_to(PKG).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (package[:len(package) - node.level + 1] if node.level else [])
            mod = [*base, *(node.module.split(".") if node.module else [])]
            if node.level == 0:
                if not node.module.startswith("bnlib"):
                    continue
                mod = node.module.split(".")[1:]
            names = [a.name for a in node.names]
            out.update(".".join([*mod, n]) if not mod else ".".join(mod) for n in names)
            if not mod:
                out.update(names)
        elif isinstance(node, ast.Import):
            out.update(a.name.removeprefix("bnlib.") for a in node.names if a.name.startswith("bnlib."))
    return {m for m in out if m and m.split(".")[0] in LAYER}


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports(path):
    me = str(path.relative_to(PKG).with_suffix("")).replace("/", ".")
    if me.endswith("__init__") and me != "__init__":
        me = me.rsplit(".", 1)[0]
    mine = layer_of(me)
    up = sorted(m for m in bnlib_imports(path) if layer_of(m) > mine and not me.startswith(m.split(".")[0]))
    assert not up, f"{me} (layer {mine}) imports from higher layers: {up}"


def test_named_rules():
    assert not any(m.startswith("chapters") for m in bnlib_imports(PKG / "config.py"))
    assert not any(m.startswith("probes") for m in bnlib_imports(PKG / "train.py"))
    for p in (PKG / "plots").glob("*.py"):
        assert not any(m.startswith("chapters") for m in bnlib_imports(p)), p.name
