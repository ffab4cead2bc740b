"""The conda environment and the pip metadata list the same runtime dependencies."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


#: Optional extras the conda environment installs too (export and ONNX Runtime).
CONDA_EXTRAS = ("onnx",)


def _pyproject_requirements(extras: tuple[str, ...] = CONDA_EXTRAS) -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = list(meta["project"]["dependencies"])
    for extra in extras:
        listed += meta["project"]["optional-dependencies"][extra]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in listed}


def _conda_pip_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml must have exactly one pip: section"
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in pip_lists[0]}


def test_environment_yml_matches_pyproject():
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_constraints_pin_cpu_torch_and_every_runtime_dependency():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower()] = str(req.specifier)
    assert pins["torch"] == "==2.13.0", "CI and the quickstart must use the local CPU wheel"
    for name in _pyproject_requirements():
        assert name in pins and pins[name].startswith("=="), f"{name} is not pinned in constraints.txt"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
