"""The commands and paths the documentation gives exist. Every `benchmarks/*.py` or
`tools/*.py` command quoted in the READMEs, CONTRIBUTING, HISTORY, PROVENANCE, the facilitator
notes or a lesson names a script that exists and only options its --help lists; every
repository path quoted there exists, and so does every `make` target. (A renamed flag or file
otherwise leaves the docs quoting a command that fails.)"""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "CONTRIBUTING.md", "benchmarks/README.md", "benchmarks/HISTORY.md",
        "notebooks/FACILITATORS.md", "ppo_edu/data/PROVENANCE.md"]
COMMAND = re.compile(r"(?:\.venv/bin/python |python )?((?:benchmarks|tools)/\w+\.py)(.*)")
PATH = re.compile(r"(?<![\w/])((?:ppo_edu|tests|tools|benchmarks|notebooks|assets)/[\w./-]+"
                  r"\.(?:py|md|txt|json|ipynb|png|gz|safetensors))")
TEST_ID = re.compile(r"(tests/\w+\.py)::(\w+)")  # a pytest node id: the test must exist
PLACEHOLDERS = {"notebooks/NN_name.ipynb"}  # CONTRIBUTING's pattern for a lesson's file name
MAKE_TARGETS = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


@functools.cache
def help_text(script):
    """The script's --help (options built at run time, from a dataclass say, are listed there)."""
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{script} --help failed: {done.stderr[-2000:]}"
    return done.stdout


def problems(text):
    """What a document's `quoted` commands and paths get wrong, one line each."""
    found = []
    # fenced blocks alternate with the prose: each line of a block is a span, and the prose's
    # `inline` spans are paired within it (a fence's three backticks would shift the pairing)
    parts = re.split(r"^[ \t]*```.*$", text, flags=re.M)
    spans = [span for i, part in enumerate(parts)
             for span in ([line.strip() for line in part.splitlines()] if i % 2
                          else re.findall(r"`([^`]+)`", part))]
    for span in spans:
        if m := COMMAND.match(span):
            script, rest = m.groups()
            if not (ROOT / script).is_file():
                found.append(f"{script} does not exist")
                continue
            found += [f"`{span}`: {script} has no {flag}"
                      for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
                      if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text(script))]
        found += [f"{p} does not exist" for p in PATH.findall(span)
                  if p not in PLACEHOLDERS and not (ROOT / p).exists()]
        found += [f"`{span}`: {path} has no {name}" for path, name in TEST_ID.findall(span)
                  if (ROOT / path).is_file()
                  and not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)]
        found += [f"`{span}`: the Makefile has no target {target}"
                  for target in re.findall(r"(?:^|\s)make (?:[A-Z_]+=\S+ )*([a-z][\w-]*)", span)
                  if target not in MAKE_TARGETS]
    return sorted(set(found))


LESSONS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def read(doc):
    """A document's text; for a lesson, the text of all its cells."""
    if not doc.endswith(".ipynb"):
        return (ROOT / doc).read_text()
    cells = json.loads((ROOT / doc).read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells)


@pytest.mark.parametrize("doc", DOCS + LESSONS)
def test_quoted_commands_and_paths_exist(doc):
    assert problems(read(doc)) == []


def test_a_renamed_flag_or_file_in_the_docs_is_found():
    text = ("Run `benchmarks/rlhf.py --only ours --no-such-flag --seed S`, then "
            "`python tools/train_reward_model.py --out /tmp/rm` (a dataclass option) and read "
            "`ppo_edu/rlhf/gone.py` and `benchmarks/missing.py --budget 3`; `make test-full`, "
            "`PPO_EDU_PROFILE=fast make lab` and `make PYTHON=python3.12 lint`; the tests "
            "`tests/test_rollout.py::test_no_transition_crosses_a_reset` and "
            "`tests/test_rollout.py::test_a_renamed_test`.")
    assert problems(text) == [
        "`benchmarks/rlhf.py --only ours --no-such-flag --seed S`: benchmarks/rlhf.py has no --no-such-flag",
        "`make PYTHON=python3.12 lint`: the Makefile has no target lint",
        "`tests/test_rollout.py::test_a_renamed_test`: tests/test_rollout.py has no test_a_renamed_test",
        "benchmarks/missing.py does not exist",
        "ppo_edu/rlhf/gone.py does not exist",
    ]


def test_a_fenced_block_is_read_line_by_line_and_does_not_shift_the_inline_spans():
    """A fence's three backticks once paired the prose after a block the wrong way round, so
    `tqdm.auto`; ... `make test-kernels` was read as one span holding 'make another'."""
    text = ("Setup:\n```bash\n.venv/bin/python tools/build_data.py --no-such-flag   # a comment\n"
            "make lab\n```\n1. In a list:\n   ```bash\n   benchmarks/rlhf.py --bogus\n   ```\n"
            "Use `tqdm.auto`; make another run. Then `make test-kernels` and `make no-target`.\n")
    assert problems(text) == [
        "`.venv/bin/python tools/build_data.py --no-such-flag   # a comment`: tools/build_data.py "
        "has no --no-such-flag",
        "`benchmarks/rlhf.py --bogus`: benchmarks/rlhf.py has no --bogus",
        "`make no-target`: the Makefile has no target no-target",
    ]
