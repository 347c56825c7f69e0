"""The package installs as a library with torch alone; the framework and the exporters are extras."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO, main_env
from tests.test_packaging import requirement_pins

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def names(specs: list[str]) -> set[str]:
    return {Requirement(spec).name.lower() for spec in specs}


def test_ckconv_and_models_run_with_torch_while_the_training_stack_cannot_be_imported():
    smoke = REPO / ".ci" / "ckconv_smoke.py"  # the script CI runs in a fresh environment beside torch alone
    done = subprocess.run([sys.executable, str(smoke)], cwd=REPO, env=main_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ckconv smoke test passed")


def test_the_package_depends_on_torch_alone_and_the_framework_is_the_train_extra():
    assert names(PROJECT["dependencies"]) == {"torch"}
    extras = PROJECT["optional-dependencies"]
    assert {"pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics"} <= names(extras["train"])
    pins = requirement_pins()
    for spec in PROJECT["dependencies"] + extras["train"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(pins[requirement.name.lower()]), spec  # the pins are in the ranges


def test_python_3_12_and_3_13_are_admitted():
    admitted = SpecifierSet(PROJECT["requires-python"])
    assert all(admitted.contains(v) for v in ("3.11.7", "3.12.1", "3.13.0"))
    assert not admitted.contains("3.11.3")  # tarfile's extraction filters came in 3.11.4


def test_the_export_extra_admits_the_pins_and_the_pins_are_installed():
    specs = {Requirement(spec).name: Requirement(spec) for spec in PROJECT["optional-dependencies"]["export"]}
    assert set(specs) == {"onnx", "onnxruntime", "onnxscript", "safetensors"}
    pins = requirement_pins()
    for name, requirement in specs.items():
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
        assert version(name) == pins[name]  # make test installs requirements.txt


def test_ci_builds_the_wheel_and_smoke_tests_it_in_a_fresh_environment():
    ci = (REPO / ".ci" / "run").read_text()
    assert ".ci/wheel_smoke" in ci
    script = (REPO / ".ci" / "wheel_smoke").read_text()
    assert "pip wheel" in script and "-m venv" in script and "ckconv_smoke.py" in script and "--installed" in script
