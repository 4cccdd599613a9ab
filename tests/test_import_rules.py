"""Layer rules (docs/architecture.md): core < toy < trainer < experiments; nodes over core and toy.

Core (mvs2v_core) imports nothing of the toy world, the trainer, the nodes or ComfyUI; no package
imports a layer above it.

Checked on the source with ``ast`` (every ``import`` / ``from ... import``, relative ones resolved
against the file's package, and ``importlib.import_module("...")`` calls with a literal name), so
an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "mvs2v_core"
FORBIDDEN = {"mvs2v_toy", "mvs2v_train", "nodes", "experiments", "comfy", "comfy_api", "comfy_extras", "folder_paths"}
FORBIDDEN_IN_CORE = {"toy", "nodes"}  # names core's own subpackages must not have (``..toy``, ``..nodes``)


def _package_of(path: Path) -> list[str]:
    """``["mvs2v_core", "pipeline"]`` for ``mvs2v_core/pipeline/vae.py``."""
    return list(path.relative_to(ROOT).with_suffix("").parts[:-1])


def _imported_modules(source: str, package: list[str]) -> list[tuple[int, list[str]]]:
    """``(line, absolute module path)`` of every import in ``source``, a module of ``package``; a
    relative import that climbs out of the repository root starts with ``"<above root>"``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level == 0:
                out.append((node.lineno, module))
                continue
            up = node.level - 1
            base = package[: len(package) - up] if up <= len(package) else None
            targets = [module] if module else [[alias.name] for alias in node.names]
            out += [(node.lineno, (base if base is not None else ["<above root>"]) + t) for t in targets]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            out.append((node.lineno, node.args[0].value.split(".")))
    return sorted(out)


def test_core_imports_neither_toy_nor_trainer_nor_nodes_nor_comfyui():
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        for line, parts in _imported_modules(path.read_text(encoding="utf-8"), _package_of(path)):
            where = f"{path.relative_to(ROOT)}:{line}: {'.'.join(parts)}"
            if parts[0] in FORBIDDEN or parts[0] == "<above root>":
                bad.append(where)
            elif parts[0] == "mvs2v_core" and set(parts[1:]) & FORBIDDEN_IN_CORE:
                bad.append(where)
    assert not bad, "core must not import these (see docs/architecture.md):\n" + "\n".join(bad)


def test_the_checker_resolves_every_kind_of_import():
    # As if in mvs2v_core/pipeline/: absolute, relative within core, relative out of core, dynamic.
    source = ("import mvs2v_toy\nfrom mvs2v_train import cli\nfrom ..toy import codec\nfrom ... import nodes\n"
              "from ...mvs2v_toy.codec import ToyCodec\nimport comfy.sd\nimportlib.import_module('folder_paths')\n"
              "from . import vae\nfrom ..errors import MVS2VError\n")
    found = [parts for _, parts in _imported_modules(source, ["mvs2v_core", "pipeline"])]
    assert found == [["mvs2v_toy"], ["mvs2v_train"], ["mvs2v_core", "toy"], ["nodes"], ["mvs2v_toy", "codec"],
                     ["comfy", "sd"], ["folder_paths"], ["mvs2v_core", "pipeline", "vae"], ["mvs2v_core", "errors"]]


def test_the_toy_world_reaches_core_only_through_its_door():
    # mvs2v_toy/_core.py finds core as a sibling (pip install or ComfyUI pack); everything else in the
    # toy package imports relatively and stays inside it, so it works in both.
    bad = []
    for path in sorted((ROOT / "mvs2v_toy").rglob("*.py")):
        if path.name == "_core.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                tops = [(node.module or "").split(".")[0]] if node.level == 0 else []
                if node.level > len(_package_of(path)):  # climbs out of mvs2v_toy
                    tops.append("<above the toy package>")
            else:
                continue
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {top}" for top in tops
                    if top in FORBIDDEN | {"mvs2v_core", "<above the toy package>"}]
    assert not bad, "import core through mvs2v_toy._core, toy modules relatively:\n" + "\n".join(bad)


# package (top folder) -> the project packages it must not import
LAYERS = {
    "mvs2v_data": {"mvs2v_toy", "mvs2v_train", "nodes", "experiments"},  # core < data < toy < trainer
    "mvs2v_toy": {"mvs2v_train", "nodes", "experiments"},
    "train": {"nodes", "experiments"},
    "nodes": {"mvs2v_train", "experiments"},
    "benchmarks": {"nodes", "experiments"},
}
COMFYUI = {"comfy", "comfy_api", "comfy_extras", "folder_paths"}
# Outside nodes/, only these files may import ComfyUI, each for a reason (not product code).
COMFYUI_BASELINES = {"benchmarks/bench_gpu.py": "times ComfyUI's native Wan model as a baseline (COMFYUI_DIR)"}


def test_no_package_imports_a_layer_above_it():
    bad = []
    for top, forbidden in LAYERS.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            for line, parts in _imported_modules(path.read_text(encoding="utf-8"), _package_of(path)):
                name = parts[1] if parts[0] == "<above root>" and len(parts) > 1 else parts[0]
                comfy_ok = top == "nodes" or str(path.relative_to(ROOT)) in COMFYUI_BASELINES
                if name in forbidden or (not comfy_ok and name in COMFYUI):
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {'.'.join(parts)}")
    assert not bad, "these imports run against the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_only_compat_touches_comfyui_internals():
    """Node files may use ComfyUI's public node API (comfy_api); everything else goes through compat.py."""
    bad = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        if path.name == "compat.py":
            continue
        for line, parts in _imported_modules(path.read_text(encoding="utf-8"), _package_of(path)):
            if parts[0] in COMFYUI - {"comfy_api"}:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {'.'.join(parts)}")
    assert not bad, "ComfyUI internals outside nodes/compat.py:\n" + "\n".join(bad)


def test_the_trainer_uses_the_toy_world_only_for_its_tiny_cpu_world():
    bad = []
    for path in sorted((ROOT / "train").rglob("*.py")):
        if path.name == "testing.py":
            continue
        for line, parts in _imported_modules(path.read_text(encoding="utf-8"), _package_of(path)):
            if parts[0] == "mvs2v_toy":
                bad.append(f"{path.relative_to(ROOT)}:{line}: {'.'.join(parts)}")
    assert not bad, "the trainer reaches toy folders through the component registry, not by import:\n" + "\n".join(bad)
