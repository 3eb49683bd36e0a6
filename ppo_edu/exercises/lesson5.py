"""Checkers for lesson 5: the Bradley-Terry loss and reading a reward at the last real token."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppo_edu.exercises._harness import (
    checker,
    describe_type,
    device_hint,
    float_hint,
    gradient,
    no_gradient_hint,
)
from ppo_edu.lm.bradley_terry import bradley_terry_loss
from ppo_edu.lm.reward import last_token_scores


def _scalar(x) -> float | None:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x.detach().reshape(()))
    return None


def _near(a: float | None, b: float, tol: float = 1e-4) -> bool:
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


@checker("Bradley-Terry loss", reference=bradley_terry_loss)
def check_bradley_terry_loss(fn):
    g = torch.Generator().manual_seed(5)
    for n in (7, 32):
        chosen = (torch.randn(n, generator=g) * 2).requires_grad_()
        rejected = (torch.randn(n, generator=g) * 2).requires_grad_()
        got = fn(chosen, rejected)
        want = bradley_terry_loss(chosen.detach(), rejected.detach())
        value = _scalar(got)
        if (hint := float_hint(got, "the loss")) is not None:
            return hint
        if value is None:
            return f"the loss is one number (a mean over the {n} pairs); you returned {describe_type(got)}"
        diff = chosen.detach() - rejected.detach()
        if _near(value, F.softplus(diff).mean().item()):
            return ("you rewarded the rejected text: the loss is -log sigmoid(r_chosen - r_rejected), "
                    "so it falls when r_chosen rises above r_rejected")
        if _near(value, F.logsigmoid(diff).mean().item()):
            return "you returned the log-likelihood log sigmoid(r_c - r_r); the loss to minimise is its negative"
        if value < -1e-6:
            swapped = ("; yours is log sigmoid(r_rejected - r_chosen): the minus sign is missing and "
                       "the scores are swapped" if _near(value, F.logsigmoid(-diff).mean().item()) else "")
            return (f"your loss is negative ({value:.5f}) on {n} pairs: it is a negative "
                    "log-likelihood, -log P with P = sigmoid(r_c - r_r) <= 1, so it is never "
                    f"negative{swapped}. The loss is mean(-log sigmoid(r_chosen - r_rejected))")
        if _near(value, F.softplus(-diff).sum().item()):
            return f"you summed over the {n} pairs; take the mean, so the step size does not grow with the batch"
        if _near(value, torch.sigmoid(-diff).mean().item()):
            return ("you returned 1 - P(chosen preferred); Bradley-Terry is maximum likelihood, "
                    "so the loss is the negative *log* of P = sigmoid(r_c - r_r)")
        if not _near(value, want.item()):
            return f"expected {want.item():.5f} on {n} pairs, got {value:.5f}"
        grads = {name: gradient(got, scores) for name, scores in (("r_chosen", chosen), ("r_rejected", rejected))}
        if grads["r_chosen"] is None and grads["r_rejected"] is None:
            return no_gradient_hint("your loss", "the scores")
        expected_grad = -torch.sigmoid(-diff) / n
        for name, sign in (("r_chosen", 1), ("r_rejected", -1)):
            if grads[name] is None or not torch.allclose(grads[name], sign * expected_grad, atol=1e-6):
                return (f"its gradient w.r.t. {name} is wrong{' (none: is it detached?)' if grads[name] is None else ''}: "
                        f"d loss / d {name} should be {'-' if sign > 0 else '+'}(1 - sigmoid(r_c - r_r)) / {n} (the number of pairs), "
                        "so training pushes the chosen score up and the rejected one down")
    value = _scalar(fn(torch.zeros(3), torch.zeros(3)))
    if not _near(value, 0.6931, 1e-3):
        return f"for equal scores P = 1/2, so the loss is log 2 ≈ 0.6931; got {value}"
    # A reward model can be confidently wrong: a gap of 200 must give a loss of ~200, not inf.
    # A gap of 2000 too: float64 only moves the overflow (sigmoid(-2000) is 0 in float64 too).
    extremes = ((200, " in float32", ""),
                (2000, " even in float64", "; computing in float64 only moves the overflow further out"))
    for gap, where, float64 in extremes:
        chosen, rejected = torch.tensor([-gap / 2, 3.0]), torch.tensor([gap / 2, 0.0])
        value = _scalar(fn(chosen, rejected))
        want = bradley_terry_loss(chosen, rejected).item()
        pairs = f"for the two pairs with gaps r_chosen - r_rejected = -{gap} and +3"
        if value is None or not torch.isfinite(torch.tensor(value)):
            return (f"{pairs} your loss is not finite: log(sigmoid(-{gap})) underflows to log(0) = "
                    f"-inf{where} (or exp({gap}) overflows to inf){float64}; use F.logsigmoid(x) or "
                    "F.softplus(-x), which are exact")
        if not _near(value, want, 1e-3):
            capped = ("; yours is capped for a confidently wrong pair (an epsilon inside the log, a "
                      "clamp, or binary cross-entropy's floor at -100), which also leaves that pair no "
                      "gradient: use F.logsigmoid or F.softplus" if value < want else "")
            return (f"{pairs} the mean loss should be about {want:.2f} (the -{gap} pair alone costs "
                    f"about {gap}, the +3 pair about 0.05), got {value:.4g}{capped}")
    # train_reward_model hands it CPU scores, but a loss must also work on GPU tensors, where a
    # target made with torch.ones(n) (a CPU tensor) fails
    return device_hint(fn, torch.randn(5, generator=g), torch.randn(5, generator=g))


def _masks():
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    left = right.flip(1)
    single = torch.tensor([[1, 0, 0], [1, 1, 1]])
    return [("right-padded", right), ("left-padded", left), ("with a one-token row", single)]


def _reads_column_0(fn) -> bool:
    """Whether ``fn`` returns column 0 on a left-padded batch, where that is padding."""
    mask = _masks()[1][1]
    scores = torch.randn(mask.shape, generator=torch.Generator().manual_seed(4))
    try:
        got = fn(scores.clone(), mask.clone())
        return isinstance(got, torch.Tensor) and got.shape == scores[:, 0].shape and bool(
            torch.allclose(got.float(), scores[:, 0]))
    except Exception:  # noqa: BLE001 - any failure here only means "not column 0"
        return False


@checker("score at the last real token", reference=last_token_scores)
def check_last_token_scores(fn):
    g = torch.Generator().manual_seed(3)
    for name, mask in _masks():
        scores = torch.randn(mask.shape, generator=g)
        full = int(mask.sum(-1).eq(mask.size(1)).nonzero()[0])  # every case has a row with no padding
        try:
            got = fn(scores, mask)
        except (IndexError, RuntimeError) as exc:
            if "out of bounds" not in str(exc) and "out of range" not in str(exc):
                raise
            if "index -1 " in str(exc):
                return (f"your function raised {type(exc).__name__}: {exc}. On a {name} batch, row "
                        f"{full} has no padding: if you took 'the first padding position - 1', "
                        "(mask == 0).argmax() is 0 for that row and the index is -1. Use the "
                        "largest index where the mask is 1, which works for every padding")
            return (f"your function raised {type(exc).__name__}: {exc}. On a {name} batch, row {full} has "
                    f"no padding, so its last real token is at position {mask.size(1) - 1}; an index of "
                    "len(row) is one past the last real token (off by one)")
        want = last_token_scores(scores, mask)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return f"expected shape {tuple(want.shape)} (one score per row), got {describe_type(got)}"
        if not (got.is_floating_point() or got.is_complex()):
            return (f"you returned {got.dtype} values {got.tolist()}: positions, not scores? Read "
                    "token_scores at each row's last real position (gather, or index with "
                    "torch.arange(B) and the positions)")
        got = got.float()  # a float64 answer is fine
        if torch.allclose(got, want):
            continue
        if torch.allclose(got, scores[:, -1]):
            return (f"on a {name} batch you read the last column, which is padding for the shorter rows: "
                    "find each row's last position where attention_mask is 1")
        row = int((~torch.isclose(got, want)).nonzero()[0])
        where = (f"on a {name} batch, row {row} (mask {mask[row].tolist()}): expected "
                 f"{want[row].item():.4f}, got {got[row].item():.4f}")
        if torch.allclose(got, scores.gather(1, mask.argmax(-1, keepdim=True)).squeeze(1)):
            # right padding puts every first real token in column 0: tell the two apart on left padding
            if torch.allclose(got, scores[:, 0]) and _reads_column_0(fn):
                return (f"{where}. You read each row's first token (column 0), not its last real "
                        "one: use the largest index where the mask is 1, e.g. "
                        "(torch.arange(L, device=mask.device) * mask).argmax(-1)")
            return (f"{where}. argmax returns the first maximum: you read the first real token, "
                    "not the last one (attention_mask.argmax(-1) is each row's first 1). Use the "
                    "largest index where the mask is 1, e.g. "
                    "(torch.arange(L, device=mask.device) * mask).argmax(-1)")
        last = (torch.arange(mask.size(1)) * mask).argmax(-1)
        has_previous = last >= 1  # a one-token row has no token before its last real one
        one_before = scores.gather(1, (last - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        if has_previous.any() and torch.allclose(got[has_previous], one_before[has_previous]):
            return (f"{where}. You read the token one before each row's last real token (off by "
                    "one, an index 1 too small): the last real token is at the largest index where "
                    "the mask is 1, e.g. L - 1 - attention_mask.flip(1).argmax(-1)")
        lengths = mask.sum(-1)
        in_range = lengths.clamp(max=mask.size(1) - 1)
        first_pad = (mask == 0).int().argmax(-1)  # 0 on a row with no padding
        padded = lengths < mask.size(1)
        for read in (in_range, first_pad):
            one_past = scores.gather(1, read.unsqueeze(1)).squeeze(1)
            if name != "left-padded" and padded.any() and torch.allclose(got[padded], one_past[padded]):
                return (f"on a {name} batch you read position len(row), the first padding position: one "
                        "past the last real token (off by one)")
        if name == "left-padded" and torch.allclose(got, scores.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)):
            return ("with left padding (real tokens at the end) len(row) - 1 is not the last real position; "
                    "use the largest index where the mask is 1, which works for both paddings")
        return where
    right = _masks()[0][1]
    return device_hint(fn, torch.randn(right.shape, generator=g), right)
