"""The licence the package metadata claims, and the conda environment that mirrors pyproject.toml."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+: on 3.10 (a floors run) these checks skip
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_top_level_licence_is_the_mit_licence_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the ppo-edu authors" in text
    assert "Permission is hereby granted, free of charge" in text and 'PROVIDED "AS IS"' in text


def test_environment_yml_lists_the_dev_extra_too():
    env = (ROOT / "environment.yml").read_text()
    pip_lines = {line.strip()[2:] for line in env.splitlines() if line.strip().startswith("- ")}
    for dep in PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]:
        if re.match(r"torch\b", dep):  # pinned there to the Makefile's version (test_course_conventions)
            assert any(re.fullmatch(r"torch==[0-9.]+", line) for line in pip_lines), "environment.yml lacks torch"
            continue
        assert dep in pip_lines, f"environment.yml lacks {dep}"
    assert "-e ." in pip_lines


def test_environment_yml_takes_torch_from_the_cpu_index():
    # PyPI's Linux torch is the CUDA build; the header must not claim otherwise.
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s+- --extra-index-url https://download\.pytorch\.org/whl/cpu$", env, re.MULTILINE)
    assert "CUDA build" in env


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _exact_pins(path: str) -> dict:
    """{package: Version} from a pip constraints file, which must hold one exact pin per package."""
    from packaging.version import Version

    pins = {}
    for line in filter(None, (line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines())):
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[0-9]+(\.[0-9]+)*", version), f"{path}: {line!r} is not an exact pin"
        assert _name(name) not in pins, f"{path} pins {name} twice"
        pins[_name(name)] = Version(version)
    return pins


def test_constraints_pin_versions_the_package_metadata_allows_and_make_uses_them():
    """constraints.txt holds the versions `make setup` and CI install: one exact pin per package,
    no torch (the Makefile pins it), and each pin inside pyproject's range for that package
    (a pin outside it would make pip fail to resolve on a fresh clone)."""
    from packaging.requirements import Requirement

    pins = _exact_pins("constraints.txt")
    assert "torch" not in pins
    declared = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    ranges = {_name(d): Requirement(d).specifier for d in declared}
    for must in ("numpy", "transformers", "tokenizers", "gymnasium", "pytest", "nbval"):
        assert must in pins, f"constraints.txt does not pin {must}"
    for name, version in pins.items():
        if name in ranges:
            assert version in ranges[name], f"constraints.txt pins {name}=={version}, outside pyproject's {ranges[name]}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install -q -e "\.\[dev\]" -c constraints\.txt$', makefile, re.MULTILINE)
    assert re.search(r"^\$\(STAMP\):.*\bconstraints\.txt\b", makefile, re.MULTILINE), \
        "a changed pin must reinstall: constraints.txt is a prerequisite of the install stamp"


def test_make_setup_refuses_a_python_older_than_the_pins_support_before_pip_runs(tmp_path):
    """numpy 2.4.6, transformers 5.25.0, matplotlib 3.11.2 and ipykernel 7.4.0 have no Python
    3.10 release: on a 3.10 venv ``make setup`` must say that, not fail deep inside pip."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    fake = venv / "bin" / "python"  # answers like a Python 3.10 and records every call
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    'case "$1" in -V) echo "Python 3.10.14";; -c) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    done = subprocess.run(["make", "-C", str(ROOT), f"VENV={venv}", "setup"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "needs Python 3.11 or later" in done.stdout and "Python 3.10.14" in done.stdout
    assert "make PYTHON=python3.11 setup" in done.stdout
    assert not any("pip" in line for line in calls.read_text().splitlines())  # stopped before pip
    assert not (venv / ".ppo-edu-installed").exists()


def test_floors_pin_exactly_the_lower_bounds_pyproject_declares():
    """tools/floors.txt (`make test-floors`) holds, for every runtime and colab dependency, the
    lowest version pyproject.toml allows: a raised floor that was not tested there, or a floor
    left below what the code needs, shows up as a difference here. torch included: the run
    installs its floor's CUDA build from PyPI (no CPU-only one there), not the Makefile's 2.13.0."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = _exact_pins("tools/floors.txt")
    declared = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["colab"]
    floors = {}
    for dep in declared:
        requirement = Requirement(dep)
        lowest = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
        assert len(lowest) == 1, f"pyproject.toml: {dep!r} has no single lower bound"
        floors[_name(requirement.name)] = lowest[0]
    assert pins == floors, f"tools/floors.txt {pins} is not pyproject's lower bounds {floors}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install -q -e "\.\[dev,colab\]" -c tools/floors\.txt$', makefile, re.MULTILINE)
    recipe = makefile.split("\ntest-floors:\n")[1].split("\n\n")[0]
    assert "torch==" not in recipe, "torch must come from tools/floors.txt, not a pin of its own"
    assert "$(call venv_of,$(FLOORS_VENV),$(FLOORS_PYTHON))" in recipe  # the Python floor (3.10): chosen


def test_newest_run_takes_every_version_unpinned():
    """`make test-newest` tests what a plain `pip install` gives a learner today: every dependency,
    torch included, at the newest release pyproject.toml allows. A constraints file or a pin in its
    recipe would make it test what `make test` already tests."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest-newest:\n")[1].split("\n\n")[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) == 2 and "--upgrade pip" in installs[0]
    assert '--upgrade --upgrade-strategy eager -e ".[dev,colab]"' in installs[1]
    assert not re.search(r"\s-c\s|--constraint|==", installs[1]), installs[1]
    assert "$(call venv_of,$(NEWEST_VENV),$(NEWEST_PYTHON))" in recipe
    assert "PPO_EDU_PROFILE=fast" in recipe and "-m pytest" in recipe
    assert "$(NEWEST_VENV)" in makefile.split("\nclean:\n")[1].split("\n\n")[0]
