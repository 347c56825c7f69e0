"""The install files agree with each other, and nothing asks for a torch this project does not support."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib

from tests.conftest import REPO


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


def conda_pip_pins(filename: str) -> dict[str, str]:
    pins = {}
    pip_section = (REPO / filename).read_text().split("- pip:", 1)[1]
    for line in pip_section.splitlines():
        match = re.match(r"^\s+- ([A-Za-z0-9_.\-]+)(==([^\s]+))?\s*$", line)
        if match:
            pins[match.group(1).lower()] = match.group(3) or ""
    return pins


def test_conda_environments_pin_exactly_the_requirements():
    expected = requirement_pins()
    for filename in ("environment.yml", "environment-nocuda.yml"):
        pins = conda_pip_pins(filename)
        stripped = {name: version.split("+")[0] for name, version in pins.items()}
        assert stripped == expected, filename


def test_nocuda_environment_takes_cpu_builds_only():
    text = (REPO / "environment-nocuda.yml").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    pins = conda_pip_pins("environment-nocuda.yml")
    assert all(pins[name].endswith("+cpu") for name in ("torch", "torchvision", "torchaudio"))
    assert "+cpu" not in (REPO / "environment.yml").read_text()


def test_the_pins_stay_at_the_tested_torch_and_the_metadata_states_the_supported_range():
    # requirements.txt is what this project's machines install (they refuse torch 2.15+); the package metadata
    # states what the code supports, so that users on newer torch or Python can install it.
    assert requirement_pins()["torch"] == "2.14.1"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch>=2.13" in project["dependencies"] and not any("<" in d for d in project["dependencies"])
    assert not project["requires-python"].count("<")


def installed_packages() -> list[str]:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.removesuffix("*") for pattern in include]


def test_what_the_installed_packages_import_from_the_repository_is_installed_too():
    packages = installed_packages()
    assert "argcheck" in packages  # the torch-free package the library's signatures take their rules from
    local = {path.name for path in REPO.iterdir() if path.is_dir() and any(path.glob("*.py"))}
    imported = set()
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
    assert imported & local <= set(packages), sorted(imported & local)


def test_argcheck_imports_nothing_but_the_standard_library():
    code = (
        "import sys, argcheck; print(sorted(m for m in ('torch', 'numpy', 'omegaconf', 'ckconv') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_makefile_and_ci_run_the_readme_test_command():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: lint", makefile, re.M) and "-m pytest" in makefile and "ruff check" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and "WANDB_MODE=disabled" in ci and "set -euo pipefail" in ci
    assert "make test" in (REPO / "README.md").read_text()


def test_readme_library_example_runs():
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    code = text[start : text.index("```", start)]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the example asserts its own results
    assert namespace["y"].shape == (8, 32, 784) and namespace["y_long"].shape == (8, 32, 1568)
