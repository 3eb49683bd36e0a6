#!/usr/bin/env python
"""Keep the notebooks and the README consistent with the solution notebooks.

Solution notebooks (``notebooks/NN_*.ipynb``) are the source of truth. This script:

1. strips outputs and execution counts from every solution notebook;
2. writes the Colab install line of each notebook's first code cell from ``ppo_edu.course``;
3. generates ``notebooks/exercises/NN_*.ipynb``: in code cells, the lines between
   ``# BEGIN SOLUTION`` and ``# END SOLUTION`` become ``raise NotImplementedError(...)``
   at the same indentation, and a banner cell says the file is generated; a line that
   looks like a marker but is not exactly one (``#BEGIN SOLUTION``, ``# end solution``)
   is an error, since it would leave the solution in the exercise; exercise notebooks
   with no solution notebook are deleted;
4. writes the README course map between its ``course-map`` markers (a README without
   them is an error).

``python tools/build_notebooks.py --check`` changes nothing and exits 1 (listing the
files) when anything is out of date; the test suite runs it.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ppo_edu.course import BRANCH, GITHUB_REPO, LESSONS, install_command  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
EXERCISES = NOTEBOOKS / "exercises"
README = ROOT / "README.md"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MARKER_LIKE = re.compile(r"#\s*(BEGIN|END)[\s_-]*SOLUTION", re.IGNORECASE)
INSTALL_RE = re.compile(r'^(\s*)!?pip install -q "ppo-edu(\[colab\])? @ git\+https://github\.com/[^"]*"\s*$')
MAP_START, MAP_END = "<!-- course-map:start -->", "<!-- course-map:end -->"
GENERATED_TAG = "generated-banner"
# The lessons whose checks also run the learner's function on GPU tensors when there is a GPU
# (``device_hint`` in ppo_edu/exercises): GPT-2 runs there. Lessons 1-4 run on the CPU.
GPU_LESSONS = ("05", "06")


def solution_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def source_lines(cell: dict) -> list[str]:
    src = cell["source"]
    text = "".join(src) if isinstance(src, list) else src
    return text.split("\n")


def set_source(cell: dict, lines: list[str]) -> None:
    text = "\n".join(lines)
    parts = text.splitlines(keepends=True)
    cell["source"] = parts


def strip(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("execution", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def set_install_line(nb: dict, name: str = "notebook") -> dict:
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = source_lines(cell)
        found = False
        for i, line in enumerate(lines):
            m = INSTALL_RE.match(line)
            if m:
                lines[i] = f"{m.group(1)}!{install_command()}"
                set_source(cell, lines)
                found = True
        if not found:  # an edited line would silently stop being kept in step with ppo_edu.course
            raise ValueError(f"{name}: its first code cell has no Colab install line of the form "
                             '!pip install -q "ppo-edu[colab] @ git+https://github.com/..."')
        break  # only the first code cell installs
    return nb


def stub_lines(lines: list[str], where: str) -> list[str]:
    out: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped not in (BEGIN, END) and MARKER_LIKE.search(line):
            raise ValueError(f"{where}: {stripped!r} looks like a solution marker but is not "
                             f"{BEGIN!r} or {END!r}; the solution would stay in the exercise")
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# Your code here (then run the check in the next cell).")
            out.append(f'{indent}raise NotImplementedError("exercise: replace this line with your solution")')
            continue
        if stripped == END:
            if not inside:
                raise ValueError(f"{where}: {END} without {BEGIN}")
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} without {END}")
    return out


def banner_rules(name: str) -> str:
    """The banner's line on what the checks enforce: the device rule only where they check it."""
    unchanged = ("leave the input tensors as they are (compute on copies or build new tensors, "
                 "no `x[...] = ...` or `x.add_(...)` on an argument)")
    if not name.startswith(GPU_LESSONS):
        return f"> A rule every check enforces: {unchanged}."
    return (f"> Two rules the checks enforce: {unchanged}, and create any new tensor on the inputs' "
            "device (`torch.zeros_like(x)`, `x.new_zeros(...)`, `device=x.device`), since on a GPU "
            "runtime the lesson calls your function with GPU tensors (and the checks try it on them).")


def exercise_version(nb: dict, name: str) -> dict:
    ex = copy.deepcopy(nb)
    for i, cell in enumerate(ex["cells"]):
        if cell["cell_type"] == "code":
            set_source(cell, stub_lines(source_lines(cell), f"{name} cell {i}"))
    banner = {
        "id": "exercise-banner",
        "cell_type": "markdown",
        "metadata": {"tags": [GENERATED_TAG]},
        "source": [
            f"> **Exercise version** of [`{name}`](../{name}), generated by "
            "`tools/build_notebooks.py`; edit the solution notebook, not this file.\n",
            "> Fill in each `raise NotImplementedError` and run the check cell after it. "
            "Stuck? Keep going: every later cell falls back to `ppo_edu`'s reference.\n",
            banner_rules(name),
        ],
    }
    ex["cells"].insert(0, banner)
    return ex


def course_map() -> str:
    rows = ["| # | Lesson | What you will do | Exercises | Colab |", "|---|---|---|---|---|"]
    for lesson in LESSONS:
        badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({lesson.colab_url})"
        rows.append(
            f"| {lesson.number} | [{lesson.title}]({lesson.path}) | {lesson.summary} | "
            f"[exercises]({lesson.exercise_path}) ([on Colab]({lesson.exercise_colab_url})) | {badge} |"
        )
    if GITHUB_REPO == "ORG/REPO":
        where = ("The Colab links point at `github.com/ORG/REPO`, a placeholder, until the "
                 "repository's\naddress is set in `ppo_edu/course.py` (see [Colab](#colab) below).")
    else:
        where = (f"The Colab links point at `github.com/{GITHUB_REPO}`, branch `{BRANCH}` "
                 "(set in `ppo_edu/course.py`).")
    return "\n".join(rows) + "\n\n" + where


def planned_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for path in solution_notebooks():
        nb = json.loads(path.read_text())
        nb = set_install_line(strip(nb), path.name)
        files[path] = dump(nb)
        files[EXERCISES / path.name] = dump(exercise_version(nb, path.name))
    text = README.read_text()
    if MAP_START not in text or MAP_END not in text:
        raise ValueError(f"README.md has lost its course-map markers ({MAP_START} ... {MAP_END}); "
                         "put them back where the course map goes")
    head, rest = text.split(MAP_START, 1)
    _, tail = rest.split(MAP_END, 1)
    files[README] = f"{head}{MAP_START}\n{course_map()}\n{MAP_END}{tail}"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    stale = []
    planned = planned_files()
    expected_exercises = {p for p in planned if p.parent == EXERCISES}
    orphans = [p for p in EXERCISES.glob("*.ipynb") if p not in expected_exercises]
    for path, content in planned.items():
        if not path.exists() or path.read_text() != content:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
    for path in orphans:
        stale.append(path)
        if not args.check:
            path.unlink()
    for path in stale:
        done = "deleted: " if path in orphans else "wrote: "
        print(("out of date: " if args.check else done) + str(path.relative_to(ROOT)))
    if args.check and stale:
        print("run `python tools/build_notebooks.py` (or `make exercises`) and commit the result")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
