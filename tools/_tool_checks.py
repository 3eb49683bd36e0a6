"""Checks the two training scripts make before they train: a 24- or 47-minute run must not
end in an error about where it was asked to write, or overwrite what it started from."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
from dataclasses import asdict
from pathlib import Path


def out_dir_problem(out: str | Path, protected: dict[str, str | Path] | None = None,
                    writes: str | None = None) -> str | None:
    """Why ``--out`` cannot take a model directory, or None.

    It must be a new folder, an empty one, or a model directory (``config.json``) to be
    replaced; the scripts write ``config.json``, ``model.safetensors``, tokenizer files,
    ``README.md`` and ``training_log.json`` into it, so ``--out .`` would overwrite the
    repository's README. ``protected`` maps a description to a path ``--out`` must not be
    (the reward-model script's ``--lm``: the model it starts from). ``writes`` is the architecture
    the script saves (``"GPT2LMHeadModel"``): a model directory holding another one, such as
    the shipped reward model given to the language-model script, is refused rather than
    replaced by a model of a different kind."""
    out = Path(out)
    for what, path in (protected or {}).items():
        if out.resolve() == Path(path).resolve():
            return f"--out {out} is {what}: writing there would overwrite it"
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file; pass a folder (new, empty, or a model directory to replace)"
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        return (f"--out {out} holds other files and is not a model directory (no config.json): the "
                "script would write config.json, model.safetensors, README.md and training_log.json "
                "among them; pass a new or empty folder")
    if writes is not None and (out / "config.json").is_file():
        try:
            found = json.loads((out / "config.json").read_text()).get("architectures") or []
        except (ValueError, AttributeError):
            return f"--out {out}: its config.json is not a JSON object; pass a new or empty folder"
        if writes not in found:
            return (f"--out {out} holds a {', '.join(map(str, found)) or 'model of unknown architecture'}, "
                    f"and this script writes a {writes}: pass a new or empty folder, or a {writes} "
                    "directory to replace")
    return None


def library_versions() -> dict[str, str]:
    """The versions a seeded run's floating-point results depend on, for its training log."""
    import numpy
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "numpy": numpy.__version__}


def add_config_options(parser: argparse.ArgumentParser, config_class) -> None:
    """One ``--option`` per field of the settings dataclass, with its docstring and default as help."""
    tree = ast.parse(inspect.getsource(config_class)).body[0]
    docs = {}
    for node, after in zip(tree.body, tree.body[1:] + [None]):
        if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    for field, default in asdict(config_class()).items():
        help_text = (docs.get(field, "") + " (default: %(default)s)").strip()
        parser.add_argument("--" + field.replace("_", "-"), type=type(default), default=default,
                            help=help_text.replace("%", "%%").replace("%%(default)s", "%(default)s"))
