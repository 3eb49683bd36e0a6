"""The shared machinery of the exercise checkers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

PASS, FAIL, TODO = "✅", "❌", "⏳"


@dataclass
class Check:
    """What a checker found: ``passed``, the message it printed, and the function to use."""

    name: str
    passed: bool
    message: str
    fn: Callable


def checker(name: str, reference: Callable):
    """Turn ``verify(fn) -> str | None`` (None when correct, else a hint) into a checker.

    The checker prints exactly one line and returns the function to use from then on.
    ``checker.verify`` is the raw verification (tests use it), ``checker.run`` returns
    the full :class:`Check`.
    """

    def decorate(verify: Callable[[Callable], str | None]):
        def run(fn: Callable) -> Check:
            if not callable(fn):
                return Check(name, False, f"{FAIL} {name}: expected a function, got {type(fn).__name__}", reference)
            try:
                hint = verify(fn)
            except NotImplementedError:
                msg = (f"{TODO} {name}: not implemented yet. The rest of the notebook uses "
                       f"ppo_edu's reference implementation.")
                return Check(name, False, msg, reference)
            except Exception as exc:  # the learner's code raised: show what and where
                hint = f"your function raised {type(exc).__name__}: {exc}"
            if hint is None:
                return Check(name, True, f"{PASS} {name}: correct on every case.", fn)
            msg = f"{FAIL} {name}: {hint} (the rest of the notebook uses ppo_edu's reference)"
            return Check(name, False, msg, reference)

        @functools.wraps(verify)
        def check(fn: Callable) -> Callable:
            result = run(fn)
            print(result.message)
            return result.fn

        check.verify = verify
        check.run = run
        check.reference = reference
        return check

    return decorate


def close(a, b, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when ``a`` is a tensor of ``b``'s shape and values (within tolerance)."""
    if not isinstance(a, torch.Tensor):
        return False
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)


def first_mismatch(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4):
    """Index (tuple) of the first entry where ``a`` and ``b`` differ, or None."""
    bad = ~torch.isclose(a.float(), b.float(), atol=atol, rtol=rtol)
    if not bad.any():
        return None
    return tuple(int(i) for i in bad.nonzero()[0])


def shape_hint(got, expected: torch.Tensor, dims: str = "") -> str | None:
    """A hint when ``got`` is not a tensor of ``expected``'s shape (``dims`` names the axes)."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        named = f" {dims}" if dims else ""
        return f"expected a tensor of shape {tuple(expected.shape)}{named}, got {describe_type(got)}"
    return None


def gradient(output: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor | None:
    """d ``output.sum()`` / d ``wrt``, or None when ``output`` is not connected to ``wrt``.

    ``.detach().requires_grad_()`` or a tensor rebuilt from numpy with ``requires_grad=True``
    passes a ``requires_grad`` test but has no path back to ``wrt``; autograd would raise
    inside the checker, and the learner would read that as their own code failing.
    """
    if not isinstance(output, torch.Tensor) or not output.requires_grad:
        return None
    (grad,) = torch.autograd.grad(output.sum(), wrt, allow_unused=True, retain_graph=True)
    return grad


def no_gradient_hint(what: str, to: str = "logprobs") -> str:
    """The hint for a result that :func:`gradient` finds cut from its input."""
    return (f"{what} carries no gradient back to {to} (a .detach(), .item(), numpy round-trip or "
            "new tensor cuts the graph, even with requires_grad=True set afterwards)")


def float_hint(got, what: str) -> str | None:
    """The hint for a loss or objective returned as a Python float, else None."""
    if isinstance(got, float):
        return (f"return {what} as a tensor: a Python float (.item()) carries no gradient, so "
                "nothing could train on it")
    return None


def describe_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
