"""The licence the package metadata claims, and the conda environment that mirrors pyproject.toml."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the course's environments all are)
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
