"""Checks the two training scripts make before they train: a 24- or 47-minute run must not
end in an error about where it was asked to write, or overwrite what it started from."""

from __future__ import annotations

from pathlib import Path


def out_dir_problem(out: str | Path, protected: dict[str, str | Path] | None = None) -> str | None:
    """Why ``--out`` cannot take a model directory, or None.

    It must be a new folder, an empty one, or a model directory (``config.json``) to be
    replaced; the scripts write ``config.json``, ``model.safetensors``, tokenizer files,
    ``README.md`` and ``training_log.json`` into it, so ``--out .`` would overwrite the
    repository's README. ``protected`` maps a description to a path ``--out`` must not be
    (the reward-model script's ``--lm``: the model it starts from)."""
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
    return None


def library_versions() -> dict[str, str]:
    """The versions a seeded run's floating-point results depend on, for its training log."""
    import numpy
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "numpy": numpy.__version__}
