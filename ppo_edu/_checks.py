"""Input validation shared by the package: errors that name the offending argument."""

from __future__ import annotations

import torch


def require_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless every tensor has the same shape, naming each argument (and
    TypeError, naming it, for one that is not a tensor: a list has no ``.shape``)."""
    for name, t in tensors.items():
        require_tensor(name, t)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first_name, first_shape = next(iter(shapes.items()))
    for name, shape in shapes.items():
        if shape != first_shape:
            listing = ", ".join(f"{n}{s}" for n, s in shapes.items())
            raise ValueError(
                f"shape mismatch: {name} has shape {shape} but {first_name} has {first_shape} ({listing})"
            )


def require_finite(**tensors: torch.Tensor) -> None:
    """Raise ValueError if a tensor holds NaN or inf, naming it and the first bad index."""
    for name, t in tensors.items():
        bad = ~torch.isfinite(t)
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{name} contains NaN or inf (first at index {index}: {t[index].item()})")


def require_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_device(device) -> torch.device:
    """``device`` as a torch.device, or RuntimeError when it names a GPU that is not there.

    Without this, asking for ``"cuda"`` on a CPU-only machine fails deep inside torch
    ("Torch not compiled with CUDA enabled", "Cannot get CUDA generator without ATen_cuda
    library"), often after a model has been loaded; never a silent fallback to the CPU.
    """
    device = torch.device(device)  # "cuda:1", torch.device("mps"), ...: parsed, not string-matched
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r} was requested but there are only "
                               f"{torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise RuntimeError(f"device {str(device)!r} was requested but Apple MPS is not available")
    return device


def require_binary(name: str, flags: torch.Tensor) -> None:
    """Raise ValueError unless ``flags`` is boolean or holds only 0 and 1.

    Masks and done flags are read with ``.bool()``: a weight of 0.25, a 2 or a NaN would
    silently count as 1 (a fully real entry, an episode end)."""
    require_tensor(name, flags)
    if flags.dtype == torch.bool:
        return
    bad = (flags != 0) & (flags != 1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be boolean or hold only 0 and 1, got {flags[index].item()} at "
                         f"index {index}")


def require_text_list(name: str, texts) -> None:
    """TypeError for a single ``str`` where a list of strings is expected: iterated, its
    characters would become one-character texts (or prompts), with no error anywhere."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got a single str (wrap it in a list)")


def text_list(name: str, texts) -> list[str]:
    """``texts`` (a list, tuple, numpy array, generator, set, ... of strings) as a list, or
    TypeError naming ``name``: for a single ``str`` (see :func:`require_text_list`), for
    something that is not iterable, and for an element that is not a string (its index)."""
    require_text_list(name, texts)
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a list (or another iterable) of strings, got "
                        f"{type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is of type {type(text).__name__}, not a string")
    return texts


def require_bool(name: str, value) -> bool:
    """``value`` unchanged, or ValueError unless it is True or False (a numpy bool too): the
    string "False" is true, and ``if "no":`` runs the branch."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def require_positive(name: str, value) -> float:
    """``value`` as a float, or ValueError unless it is a real number > 0 (inf allowed: "no
    limit"; NaN, True and "0.2" are not)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def require_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError unless it is a whole number >= ``minimum``
    ("8" or 2.5 fail later with messages that do not name the argument; True is not a count)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


SEED_LIMIT = 2**64
"""Seeds that torch and gymnasium both take are the integers in [0, 2**64): torch's
``manual_seed`` (and ``torch.Generator.manual_seed``) takes up to 2**64 - 1 ("Overflow when
unpacking long long" above), gymnasium's ``reset(seed=...)`` no negative one."""


def require_seed(name: str, value) -> int:
    """``value`` as an int, or ValueError unless it is a whole number in [0, 2**64)
    (:data:`SEED_LIMIT`): a larger one fails inside torch with an error that names no argument."""
    import numbers

    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or not 0 <= value < SEED_LIMIT):
        raise ValueError(f"{name} must be an integer >= 0 and < 2**64 (gymnasium seeds only "
                         f"non-negative integers, torch at most 2**64 - 1), got {value!r}")
    return int(value)
