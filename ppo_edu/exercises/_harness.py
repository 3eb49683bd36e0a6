"""The shared machinery of the exercise checkers."""

from __future__ import annotations

import contextlib
import functools
import inspect
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
    ``checker.verify`` is the verification (tests use it), ``checker.run`` returns the
    full :class:`Check`. Every call of the learner's function is watched: one that changes
    a tensor it was given, in place, fails with a hint naming that argument (the callers,
    the trainer among them, use those tensors again afterwards).
    """
    names = _parameter_names(reference)

    def decorate(raw: Callable[[Callable], str | None]):
        @functools.wraps(raw)
        def verify(fn: Callable) -> str | None:
            watched = _watched(fn, names)
            try:
                return raw(watched)
            except InputChanged as exc:
                return exc.hint
            except ChangedAfterUse as exc:
                return exc.hint_for(watched.changed_in_place)

        def run(fn: Callable) -> Check:
            if not callable(fn):
                return Check(name, False, f"{FAIL} {name}: expected a function, got {type(fn).__name__}", reference)
            try:
                hint = verify(fn)
            except NotImplementedError as exc:
                stub = _unfinished(fn, exc)
                if stub is None:
                    msg = (f"{TODO} {name}: not implemented yet. The rest of the notebook uses "
                           f"ppo_edu's reference implementation.")
                    return Check(name, False, msg, reference)
                hint = stub
            except Exception as exc:  # the learner's code raised: show what and where
                hint = f"your function raised {type(exc).__name__}: {exc}"
            if hint is None:
                return Check(name, True, f"{PASS} {name}: correct on every case.", fn)
            msg = f"{FAIL} {name}: {hint} (the rest of the notebook uses ppo_edu's reference)"
            return Check(name, False, msg, reference)

        @functools.wraps(raw)
        def check(fn: Callable) -> Callable:
            result = run(fn)
            print(result.message)
            return result.fn

        check.verify = verify
        check.run = run
        check.reference = reference
        return check

    return decorate


def _unfinished(fn: Callable, exc: NotImplementedError) -> str | None:
    """None when ``fn`` itself is the unfinished stub (its own line raised), else the hint.

    A finished function can still raise NotImplementedError: it called another exercise's
    stub directly (``my_probability_ratio`` instead of the checked ``probability_ratio_fn``),
    or torch has no kernel for an operation on this device. Calling either "not implemented
    yet" would send the learner back to code that is done.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    # the stub line tools/build_notebooks.py writes, or a learner's own bare placeholder
    stub_line = str(exc).startswith("exercise:")
    if not (stub_line or str(exc) == ""):
        return f"your function raised NotImplementedError: {exc}"  # torch's, say: not a stub
    own = getattr(inspect.unwrap(fn), "__code__", None)  # through @torch.no_grad() and the like
    if own is None or frames[-1] is own:
        return None
    if not stub_line:  # a bare one from a helper or a library
        return f"your function raised NotImplementedError in `{frames[-1].co_name}`, which it calls"
    return (f"your function calls `{frames[-1].co_name}`, which is not implemented yet. Call the "
            "function an earlier check cell returned instead (the `..._fn` name): it is yours "
            "once yours passes, and the reference until then")


class InputChanged(Exception):
    """The learner's function changed one of its input tensors in place.

    ``refused`` is torch's message when autograd stopped the change before it happened (an
    in-place operation on an argument that requires grad); ``arguments`` then names each
    argument that was refused (see :func:`_refused_arguments`)."""

    def __init__(self, *arguments: str, refused: str | None = None):
        named = " or ".join(f"`{a}`" for a in arguments)
        one = arguments[0] if len(arguments) == 1 else "x"
        verb = "changed" if refused is None else "tried to change"
        self.hint = (f"your function {verb} its argument {named} in place (an indexed "
                     f"assignment such as {one}[...] = ..., +=, or a method ending in _ such "
                     f"as .mul_()). The caller uses {named} again afterwards, and would get "
                     f"your changes: compute on a copy ({one}.clone()) or build a new tensor")
        if refused is not None:
            self.hint += (". Torch refused that in-place operation on an input that requires "
                          f"grad: RuntimeError: {refused}")
        super().__init__(self.hint)


class ChangedAfterUse(Exception):
    """The checker's own autograd call (:func:`gradient`, :func:`backward`) failed because the
    learner's function changed, in place, a tensor that its result's graph had saved: torch's
    "modified by an inplace operation". The values may be the same (``advantages.clamp_(-10,
    10)`` on advantages inside the range), so the watcher's comparison cannot see it; raised
    from the checker's code, torch's message would read as the learner's function failing."""

    def hint_for(self, arguments: list[str]) -> str:
        """The hint; ``arguments`` are those the last call changed in place (if any), named as
        suspects only: the tensor autograd saved may as well be one the function made itself."""
        suspects = ""
        if arguments:
            named = " and ".join(f"`{a}`" for a in arguments)
            suspects = (f" Your function changed its argument{'s' if len(arguments) > 1 else ''} "
                        f"{named} in place: if that came after a line that computed with it, "
                        "that is the change.")
        return ("your function changed a tensor in place after using it (a method ending in _ "
                "such as x.clamp_(...) or x.mul_(...), +=, or x[...] = ..., on a line after one "
                "that computed with x). The values may look the same, but autograd saved the "
                "original to compute the gradient, and the gradient of your result fails: "
                "RuntimeError: one of the variables needed for gradient computation has been "
                f"modified by an inplace operation.{suspects} Use an out-of-place op "
                "(x = x.clamp(...)) or work on a copy (x.clone())")


def _modified_after_use(exc: BaseException) -> bool:
    """True for autograd's error when a tensor the graph saved was changed in place."""
    return isinstance(exc, RuntimeError) and "modified by an inplace operation" in str(exc)


@contextlib.contextmanager
def autograd_of_the_answer():
    """Turn autograd's "modified by an inplace operation" into :class:`ChangedAfterUse`."""
    try:
        yield
    except RuntimeError as exc:
        if not _modified_after_use(exc):
            raise
        raise ChangedAfterUse(str(exc)) from exc


def _refused_in_place(exc: BaseException) -> bool:
    """True for autograd's refusal of an in-place operation on a leaf that requires grad."""
    return ("leaf Variable that requires grad" in str(exc) and "in-place" in str(exc)
            and isinstance(exc, RuntimeError))


def _fresh(value):
    """A copy of a tensor argument, a leaf again if it was one; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    return value


def _refused_arguments(fn: Callable, args: tuple, kwargs: dict, labelled: list) -> list[str]:
    """The labels of the arguments whose in-place change autograd refused, found by calling
    ``fn`` again on copies: a leaf argument that requires grad, passed as a non-leaf copy
    (which autograd lets change), lets the call through. Empty when the call is refused with
    every such argument a non-leaf: the refused leaf is one the function made itself."""
    slots = [*range(len(args)), *kwargs]
    candidates = [(slot, label) for slot, (label, arg) in zip(slots, labelled)
                  if isinstance(arg, torch.Tensor) and arg.requires_grad and arg.is_leaf]

    def refused(unleafed) -> bool:
        again_args, again_kwargs = [_fresh(a) for a in args], {k: _fresh(v) for k, v in kwargs.items()}
        for slot in unleafed:
            if isinstance(slot, int):
                again_args[slot] = again_args[slot].clone()
            else:
                again_kwargs[slot] = again_kwargs[slot].clone()
        try:
            fn(*again_args, **again_kwargs)
        except Exception as exc:  # noqa: BLE001 - only autograd's refusal matters here
            return _refused_in_place(exc)
        return False

    if not candidates or refused([slot for slot, _ in candidates]):
        return []
    # each alone; when none is alone (two changed in place), all of them
    culprits = [label for slot, label in candidates if not refused([slot])]
    return culprits or [label for _, label in candidates]


def _parameter_names(fn: Callable) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return []


def _unchanged(before: torch.Tensor, after: torch.Tensor) -> bool:
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    if before.is_floating_point() or before.is_complex():
        return torch.allclose(before, after.detach(), rtol=0.0, atol=0.0, equal_nan=True)
    return torch.equal(before, after.detach())


def _version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter (bumped by each in-place change), None where there is none."""
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor tracks no version
        return None


def _watched(fn: Callable, names: list[str]) -> Callable:
    """``fn``, raising :class:`InputChanged` after a call that changed a tensor argument."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        labelled = [(names[i] if i < len(names) else f"#{i + 1}", a) for i, a in enumerate(args)]
        labelled += list(kwargs.items())
        before = [(label, arg, arg.detach().clone()) for label, arg in labelled
                  if isinstance(arg, torch.Tensor)]
        versions = [_version(arg) for _, arg, _ in before]
        call.changed_in_place = []
        try:
            out = fn(*args, **kwargs)
        except RuntimeError as exc:
            # autograd stops `logprobs -= old_logprobs` on an argument that requires grad
            # before the comparison below could see it: the same mistake, the same hint
            culprits = _refused_arguments(fn, args, kwargs, labelled) if _refused_in_place(exc) else []
            if not culprits:  # not an argument: a leaf the function made itself
                raise
            raise InputChanged(*culprits, refused=str(exc)) from exc
        for label, arg, copy in before:
            if not _unchanged(copy, arg):
                raise InputChanged(label)
        # changed in place to the same values: harmless, unless the result's graph saved the
        # tensor (see ChangedAfterUse); remembered to name it then
        call.changed_in_place = [label for (label, arg, _), version in zip(before, versions)
                                 if _version(arg) != version]
        return out

    call.unwatched = fn
    call.changed_in_place = []
    return call


def accelerator() -> torch.device | None:
    """The GPU the lessons may call the learner's functions on: CUDA, or None.

    Only GPT-2 runs on a GPU, and the lessons' GPU path is Colab's CUDA runtime; the tiny
    models run on the CPU wherever the lessons run. Apple's MPS is not checked: the tiny
    models never run there, and a correct answer in float64, which MPS does not support,
    would be failed for it."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return None


def device_hint(fn: Callable, *args) -> str | None:
    """Call ``fn(*args)`` once more with its tensors on :func:`accelerator` (when there is
    one), as lessons 5 and 6 call it with GPT-2 on a GPU runtime: a hint when it fails there
    (a tensor made on the CPU inside it, e.g. ``torch.arange(n)``) or answers on another
    device."""
    device = accelerator()
    if device is None:
        return None
    fn = getattr(fn, "unwatched", fn)  # in-place changes were checked on the CPU cases
    moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    try:
        out = fn(*moved)
    except TypeError as exc:
        # .numpy() on a GPU tensor: "can't convert cuda:0 device type tensor to numpy"
        if "numpy" not in str(exc) or "device" not in str(exc):
            raise
        return (f"your function is right on CPU tensors but fails on {device.type} ones, which is "
                f"how the lesson calls it on a GPU ({exc}). numpy works on CPU tensors only: stay in "
                "torch (torch.where, torch.cumsum, torch.flip, ... have numpy's counterparts)")
    except RuntimeError as exc:
        if "device" not in str(exc):
            raise
        return (f"your function is right on CPU tensors but fails on {device.type} ones, which is "
                f"how the lesson calls it on a GPU ({exc}). Make new tensors on the inputs' device: "
                "torch.arange(n, device=x.device), torch.zeros_like(x), x.new_zeros(...)")
    for o in out if isinstance(out, (tuple, list)) else (out,):
        if isinstance(o, torch.Tensor) and o.device.type != device.type:
            return (f"given {device.type} tensors your function answered on {o.device}: keep the "
                    "result on the inputs' device")
    return None


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


def last_mismatch(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4):
    """Index (tuple) of the last entry where ``a`` and ``b`` differ, or None. In a backward
    recursion (GAE) an error at step t spoils every earlier step: the last wrong one is where
    it was made."""
    bad = ~torch.isclose(a.float(), b.float(), atol=atol, rtol=rtol)
    if not bad.any():
        return None
    return tuple(int(i) for i in bad.nonzero()[-1])


def recursion_factor_hint(matches: Callable[[float], bool], gamma: float, lam: float) -> str | None:
    """The hint for a GAE recursion that multiplies A_(t+1) by gamma alone, lam alone or
    nothing instead of gamma * lam, else None. ``matches(factor)`` tells whether the learner's
    advantages are the recursion's with ``factor`` in place of gamma * lam (called only on
    answers that differ from the right one, so a factor equal to gamma * lam never matches).

    Left alone, such a mistake is blamed on a step's own delta_t: the last step of an episode is
    right (nothing follows it), the one before is the first wrong one."""
    formula = "A_t = delta_t + gamma * lam * A_(t+1)"
    if gamma != 1.0 and lam != 1.0 and matches(1.0):
        return (f"your recursion adds A_(t+1) with no factor: gamma and lam are both missing, "
                f"{formula}")
    if matches(gamma):  # with gamma = 1 also no factor at all
        unit = " (gamma = 1 here: or by nothing at all)" if gamma == 1.0 else ""
        return f"your recursion multiplies A_(t+1) by gamma only{unit}: lam is missing, {formula}"
    if matches(lam):  # with lam = 1 also no factor at all
        unit = " (lam = 1 here: or by nothing at all)" if lam == 1.0 else ""
        return (f"your recursion multiplies A_(t+1) by lam only{unit}: gamma is missing, {formula} "
                "(the gamma in delta_t discounts V(s_(t+1)), not the advantages that follow)")
    return None


def dtype_hint(got, like: str = "values", flag: str = "terminated",
               flag_dtype: torch.dtype = torch.bool) -> str | None:
    """A hint when ``got`` is a tensor of booleans or integers where the result must be floating
    point (a buffer made with ``torch.zeros_like(terminated)``, say: storing floats into it
    turns them into True/False), else None. ``like`` names an argument of the right dtype to
    build the buffer from; ``flag`` names the argument a flag buffer is typically made from,
    and ``flag_dtype`` is its dtype (lesson 3's ``terminated`` is bool, lesson 6's ``mask`` an
    integer tensor), so the hint names the buffer ``torch.zeros_like(flag)`` really gives."""
    if not isinstance(got, torch.Tensor) or got.is_floating_point() or got.is_complex():
        return None
    flag_is_bool = flag_dtype == torch.bool
    if got.dtype == torch.bool:
        if flag_is_bool:
            why = (f"a buffer made from a flag, torch.zeros_like({flag}), is bool, and every float "
                   "stored into it becomes True or False")
        else:
            why = (f"a bool buffer (torch.zeros_like({flag}, dtype=torch.bool), say) turns every "
                   "float stored into it into True or False")
    elif flag_is_bool:
        why = (f"an integer buffer (torch.zeros_like({flag}, dtype=torch.long), say) or a "
               ".long()/.int() cuts off the fraction of every value")
    else:
        why = (f"a buffer made from the {flag}, torch.zeros_like({flag}), is an integer tensor "
               f"like `{flag}` ({flag_dtype}), and it cuts off the fraction of every float stored "
               "into it (as does a .long()/.int())")
    return (f"your result is {'a bool' if got.dtype == torch.bool else 'an integer'} tensor "
            f"({got.dtype}); it must be floating point, like `{like}`: {why}. Build the result "
            f"like `{like}` (torch.zeros_like({like}))")


def negated_value_loss_hint(where: str, got: float, expected: float) -> str:
    """The hint for a clipped value loss returned with its sign flipped (lessons 4 and 6)."""
    return (f"{where} you returned {got:.5f}, minus the loss ({expected:.5f}): the value loss is a "
            "squared error to minimise, 0.5 * mean(max(...)) >= 0, with no minus sign (unlike "
            "L^CLIP, which the trainer negates, it enters the total loss as it is)")


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
    with autograd_of_the_answer():
        (grad,) = torch.autograd.grad(output.sum(), wrt, allow_unused=True, retain_graph=True)
    return grad


def backward(output: torch.Tensor) -> None:
    """``output.backward()``, with autograd's "modified by an inplace operation" turned into
    the hint of :class:`ChangedAfterUse` (the checker's call, not the learner's, raises it)."""
    with autograd_of_the_answer():
        output.backward()


def no_gradient_hint(what: str, to: str = "logprobs") -> str:
    """The hint for a result that :func:`gradient` finds cut from its input."""
    return (f"{what} carries no gradient back to {to} (a .detach(), .item(), numpy round-trip or "
            "new tensor cuts the graph, even with requires_grad=True set afterwards)")


def float_hint(got, what: str) -> str | None:
    """The hint for a loss or objective returned as a Python float or a numpy value, else None."""
    if isinstance(got, float):
        return (f"return {what} as a tensor: a Python float (.item()) carries no gradient, so "
                "nothing could train on it")
    if type(got).__module__ == "numpy":
        return (f"return {what} as a torch tensor: a numpy value ({type(got).__name__}; .numpy() "
                "needs .detach()) carries no gradient, so nothing could train on it")
    return None


def standardised(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` shifted to mean 0 and scaled to std 1, with the sample std and with the population
    std: what a learner's function returns when it normalises advantages it should leave alone."""
    return [(x - x.mean()) / (x.std(correction=correction) + 1e-8) for correction in (1, 0)]


def nan_hint(got, what: str) -> str | None:
    """The hint for a tensor result holding NaN or inf (comparisons with NaN are all False,
    so a check written as ``abs(got - want) > tol`` would pass it), else None."""
    if isinstance(got, torch.Tensor) and got.is_floating_point() and not torch.isfinite(got).all():
        bad = (~torch.isfinite(got.detach())).nonzero()
        where = f" at index {tuple(int(i) for i in bad[0])}" if got.dim() else ""
        value = got.detach().reshape(-1)[~torch.isfinite(got.detach().reshape(-1))][0].item()
        return (f"{what} is {value}{where} where the reference is finite (typical causes: a std "
                "over one sample, 0/0, log(0), exp() overflowing)")
    return None


def describe_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
