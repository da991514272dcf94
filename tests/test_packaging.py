"""What pip reads: every third-party module the package imports is declared in setup.py."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "projects" / "BlendMask" / "blendmask"
# brought by the user (their own CUDA/CPU builds; detectron2 is not on PyPI): setup.py's docstring says so
USER_PROVIDED = {"torch", "torchvision", "detectron2"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(setup_py: Path = REPO_ROOT / "setup.py") -> dict:
    """{normalised distribution name: where} from setup.py's INSTALL_REQUIRES and EXTRAS_REQUIRE literals."""
    tree = ast.parse(setup_py.read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("INSTALL_REQUIRES", "EXTRAS_REQUIRE"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    if "INSTALL_REQUIRES" not in values:
        raise AssertionError(f"{setup_py} has no INSTALL_REQUIRES = [...] literal")
    out = {}
    for requirement in values["INSTALL_REQUIRES"]:
        out[_norm(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])] = "install_requires"
    for extra, requirements in values.get("EXTRAS_REQUIRE", {}).items():
        for requirement in requirements:
            out.setdefault(_norm(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]), f"extras[{extra}]")
    return out


def third_party_imports(files) -> dict:
    """{top-level module: first file:line importing it} for absolute imports of non-stdlib modules."""
    found = {}
    for path in files:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "blendmask" or top == "__future__":
                    continue
                found.setdefault(top, f"{path}:{node.lineno}")
    return found


def undeclared(imports: dict, declared: dict) -> list:
    """The imports whose distribution (as installed here) setup.py does not declare."""
    distributions = packages_distributions()
    missing = []
    for module, where in sorted(imports.items()):
        if module in USER_PROVIDED:
            continue
        dists = {_norm(d) for d in distributions.get(module, [module])}
        if not dists & declared.keys():
            missing.append(f"{module} ({'/'.join(sorted(dists))}) imported at {where}")
    return missing


def test_every_third_party_import_of_the_package_is_declared():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the whole package (and its python configs) is scanned
    imports = third_party_imports(files)
    assert {"torch", "detectron2", "cv2", "numpy"} <= imports.keys()
    missing = undeclared(imports, declared_requirements())
    assert not missing, "declare these in setup.py's INSTALL_REQUIRES (or an extra):\n" + "\n".join(missing)


def test_the_check_catches_an_undeclared_import(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("import os\nimport yaml\nfrom cv2 import imread\nfrom . import sibling\nimport torch\n")
    imports = third_party_imports([source])
    assert sorted(imports) == ["cv2", "torch", "yaml"]
    setup_py = tmp_path / "setup.py"
    setup_py.write_text('INSTALL_REQUIRES = ["PyYAML>=5"]\nEXTRAS_REQUIRE = {"x": ["onnx"]}\n')
    declared = declared_requirements(setup_py)
    assert declared == {"pyyaml": "install_requires", "onnx": "extras[x]"}
    missing = undeclared(imports, declared)
    assert len(missing) == 1 and missing[0].startswith("cv2 (opencv-python-headless)")


def test_setup_script_installs_the_runtime_packages_whichever_detectron2_it_keeps():
    """tools/setup_env.sh once installed opencv & co. only beside its own detectron2 0.6 build: both
    branches install RUNTIME_PINS, and the package's editable install (its requirements) follows both."""
    script = (REPO_ROOT / "tools" / "setup_env.sh").read_text()
    keep_branch = script[script.index("keeping the installed"):script.index("\nelse\n")]
    build_branch = script[script.index("\nelse\n"):script.index("\nfi\n", script.index("\nelse\n"))]
    assert 'pins=("${RUNTIME_PINS[@]}")' in keep_branch and 'install "${pins[@]}"' in keep_branch
    assert '"${RUNTIME_PINS[@]}"' in build_branch
    assert script.index("install --no-build-isolation -e") > script.index(build_branch)


@pytest.mark.parametrize("module", ["cv2", "yaml", "pycocotools", "PIL"])
def test_declared_runtime_modules_import(module):
    __import__(module)
