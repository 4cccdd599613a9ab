"""Packaging rules: core never imports ComfyUI, imports itself relatively, stays light to import;
no torch pin for ComfyUI users; .ci/run calls the README's test command, the real-ComfyUI tests
and the registry check, which the publish workflow runs too."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "mvs2v_core"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import statement in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def test_core_never_imports_comfyui_and_imports_itself_relatively():
    # Relative imports let the node pack use mvs2v_core from inside ComfyUI's custom_nodes folder,
    # where it is not installed as a package.
    for path in CORE.rglob("*.py"):
        for level, module in _imports(path):
            top = module.split(".")[0]
            assert level > 0 or top not in {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes"}, (path, module)
            assert level > 0 or top != "mvs2v_core", f"{path}: absolute import of {module}; use a relative import"


@pytest.mark.slow
def test_light_modules_do_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "import mvs2v_core.references.layout, mvs2v_core.references.positions, mvs2v_core.model.transformer\n"
        "import mvs2v_core.sampling.sampler, mvs2v_core.adapter, mvs2v_core.cli\n"
        "heavy = [m for m in ('diffusers', 'transformers', 'av', 'accelerate') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_torch_is_never_a_requirement_of_the_pack():
    reqs = (ROOT / "requirements.txt").read_text().splitlines()
    names = [re.split(r"[<>=!~\[; ]", r.strip())[0].lower() for r in reqs if r.strip() and not r.startswith("#")]
    assert not {"torch", "torchvision", "torchaudio", "torchsde"} & set(names)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [re.split(r"[<>=!~\[; ]", d)[0].lower() for d in project["dependencies"]]
    assert "torch" not in deps
    assert "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert len(commands) == 2, commands
    test_command = commands[1]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci


def test_ci_runs_the_registry_check_and_the_real_comfyui_tests_after_the_suite():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = ["./scripts/test.sh", "./scripts/validate_pack.sh", "./scripts/comfyui_tests.sh all"]
    assert all(step in ci for step in steps), ci
    assert [ci.index(step) for step in steps] == sorted(ci.index(step) for step in steps)
    for step in steps:
        script = ROOT / step.split()[0]
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_publish_workflow_validates_the_pack_with_the_ci_script():
    workflow = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    validate, publish = workflow.index("scripts/validate_pack.sh"), workflow.index("publish-node-action")
    assert validate < publish
    assert "pip install comfy-cli" not in workflow  # one pinned comfy-cli, installed by the script


def test_package_data_ships_every_file_of_the_bundled_demo_model():
    # A wheel (pip / Comfy Registry install) must carry the model `mvs2v demo` runs, not just a git clone.
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mvs2v_toy"]
    toy = ROOT / "mvs2v_toy"
    shipped = {p for pattern in data for p in toy.glob(pattern) if p.is_file()}
    bundled = {p for p in (toy / "assets" / "toy_demo").rglob("*") if p.is_file()}
    assert bundled and bundled <= shipped, sorted(str(p.relative_to(toy)) for p in bundled - shipped)
