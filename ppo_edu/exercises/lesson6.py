"""Checkers for lesson 6 (RLHF of GPT-2 with PPO).

Shapes: ``(B, R)`` is responses x response tokens; ``mask`` is 1 on real tokens (up to
and including the first EOS) and 0 on the padding after them.
"""

from __future__ import annotations

import inspect

import torch

from ppo_edu.exercises._harness import (
    autograd_of_the_answer,
    checker,
    close,
    describe_type,
    device_hint,
    dtype_hint,
    first_mismatch,
    gradient,
    last_mismatch,
    nan_hint,
    negated_value_loss_hint,
    no_gradient_hint,
    recursion_factor_hint,
    shape_hint,
    standardised,
)
from ppo_edu.rlhf.advantages import token_gae, whiten
from ppo_edu.rlhf.generation import response_mask_from_eos
from ppo_edu.rlhf.kl import expected_kl_gradients, expected_term_gradient, kl_loss_term, kl_penalty
from ppo_edu.rlhf.losses import clipped_value_loss

EOS = 0



def _mask(lengths: list[int], R: int) -> torch.Tensor:
    return (torch.arange(R)[None, :] < torch.tensor(lengths)[:, None]).long()


# --------------------------------------------------------------------------- exercise 6.1


def _response_cases() -> list[torch.Tensor]:
    return [
        torch.tensor([[5, 6, EOS, 7, EOS], [5, 6, 7, 8, 9], [EOS, 3, 3, 3, 3]]),
        torch.tensor([[EOS, EOS, EOS], [4, EOS, EOS]]),  # pad == eos: padding looks like EOS
        torch.tensor([[1, 2, 3, 4, EOS, 9, EOS, 8]]),
    ]


@checker("response mask from the first EOS", response_mask_from_eos)
def check_response_mask(fn):
    """``fn(response_ids, eos_token_id)`` -> mask (B, R): 1 up to and including the first EOS."""
    for ids in _response_cases():
        got = fn(ids.clone(), EOS)
        expected = response_mask_from_eos(ids, EOS)
        if (hint := shape_hint(got, expected, "(B, R)")) is not None:
            return hint
        idx = first_mismatch(got, expected)
        if idx is None:
            continue
        row, col = idx
        if ids[row, col] == EOS and got[row, col] == 0 and expected[row, col] == 1:
            return (f"response {row}: you masked out its first EOS (token {col}). The EOS is the "
                    "policy's decision to stop; it is a real action, with a log-prob, a value and "
                    "the score. Masking `ids != eos` does this (with pad == eos, so does masking the "
                    "padding: raised in a review of TRL PR #5303)")
        eos_at = (ids[row] == EOS).nonzero()
        if len(eos_at) and col < int(eos_at[0]) and got[row, col] == 0 and expected[row, col] == 1:
            first = int(eos_at[0])
            return (f"response {row}: your mask stops before its first EOS (token {first}): it is 0 "
                    f"at token {col}, where it must be 1 up to and including that EOS. The first "
                    "EOS belongs to the response (the policy's decision to stop, with a log-prob, a "
                    "value and the score), and so does every token before it. A cumsum shifted the "
                    "wrong way (reading the EOS count of the next token) does this: count the EOS "
                    "tokens *before* t, (is_eos.cumsum(1) - is_eos) == 0")
        if not bool((ids[row] == EOS).any()):
            return (f"response {row} has no EOS: it ran to the length limit, so every one of its "
                    f"tokens is real and its mask is all ones; yours has a 0 at token {col}. "
                    "(The argmax of a row with no EOS is 0, as if the EOS were at position 0)")
        if got[row, col] == 1 and expected[row, col] == 0:
            return (f"response {row}, token {col} comes after the first EOS and must be masked "
                    "(mask only the tokens *after* the first EOS, including later EOS tokens)")
        return f"response {row}, token {col}: expected {int(expected[row, col])}, got {got[row, col]}"
    return device_hint(fn, _response_cases()[0], EOS)


# --------------------------------------------------------------------------- exercise 6.2


def _kl_cases():
    g = torch.Generator().manual_seed(0)
    out = []
    for B, R, lengths in ((3, 5, [5, 2, 1]), (2, 4, [4, 3])):
        logprobs = -torch.rand(B, R, generator=g) * 3
        ref_logprobs = -torch.rand(B, R, generator=g) * 3
        out.append((logprobs, ref_logprobs, _mask(lengths, R)))
    return out


@checker("per-token KL penalty (k1 and k3)", kl_penalty)
def check_kl_penalty(fn):
    """``fn(logprobs, ref_logprobs, mask, estimator)`` -> per-token KL (B, R), 0 on padding."""
    for estimator in ("k1", "k3"):
        for logprobs, ref_logprobs, mask in _kl_cases():
            got = fn(logprobs.clone(), ref_logprobs.clone(), mask.clone(), estimator)
            expected = kl_penalty(logprobs, ref_logprobs, mask, estimator)
            if (hint := shape_hint(got, expected, "(B, R)")) is not None:
                return hint
            if close(got, expected):
                continue
            real = mask.bool()
            if close(got[real], expected[real]):
                return ("right on real tokens, but padding must contribute 0: "
                        "torch.where(mask.bool(), kl, 0.0). Multiplying by the mask is safe only "
                        "while the padding is finite: padding may hold -inf log-probabilities, and "
                        "-inf * 0 is NaN")
            if estimator == "k1" and close(got, kl_penalty(logprobs, ref_logprobs, mask, "k3")):
                return ("with estimator='k1' you returned k3; k1 = log pi_theta(y_t) - log pi_ref(y_t) "
                        "= -log rho (are the two branches swapped, or does the estimator argument "
                        "never reach the choice?)")
            if estimator == "k1" and (close(got, expected.abs()) or close(got, expected.clamp(min=0))):
                return ("k1 = log pi_theta(y_t) - log pi_ref(y_t) is negative on some tokens, and "
                        "that is right: only its average over tokens sampled from pi_theta estimates "
                        "the KL, without bias. Keep its sign (no abs or clamp, which bias it upward); "
                        "k3 is the estimator that is never negative")
            if estimator == "k1" and close(got, -expected):
                return ("k1 has the wrong sign: k1 = log pi_theta(y_t) - log pi_ref(y_t), the log "
                        "of pi_theta / pi_ref, since y_t was sampled from pi_theta")
            if estimator == "k3":
                if close(got, kl_penalty(logprobs, ref_logprobs, mask, "k1")):
                    return "with estimator='k3' you returned k1; k3 = (rho - 1) - log rho"
                if close(got, 0.5 * (logprobs - ref_logprobs) ** 2 * mask):
                    return ("with estimator='k3' you returned k2 = (log rho)^2 / 2; k3 = (rho - 1) - log rho. "
                            "Close to k3 where the models agree, but biased")
                flipped = kl_penalty(ref_logprobs, logprobs, mask, "k3")
                if close(got, flipped):
                    return ("k3 uses rho = pi_ref(y_t) / pi_theta(y_t) (reference over policy): "
                            "log rho = ref_logprobs - logprobs")
                if (got[real] < -1e-6).any():
                    return "k3 = (rho - 1) - log rho is never negative; yours is. Check the formula"
            idx = first_mismatch(got, expected)
            return (f"estimator {estimator!r}: at {idx} expected {float(expected[idx]):.6g}, "
                    f"got {float(got[idx]):.6g}")
    return device_hint(fn, *_kl_cases()[0], "k3")


# --------------------------------------------------------------------------- exercise 6.3


def _kl_term_cases():
    """(logits, ref_logits) pairs over small vocabularies, from close to far apart."""
    g = torch.Generator().manual_seed(2)
    out = []
    for V, distance in ((5, 1.0), (12, 2.0), (30, 3.0)):
        ref_logits = torch.randn(V, generator=g)
        out.append((ref_logits + distance * torch.randn(V, generator=g), ref_logits))
    return out


@checker("a KL term for the loss whose gradient is right", kl_loss_term)
def check_kl_loss_term(fn):
    """``fn(logprobs, ref_logprobs)`` -> a per-token loss term of the same shape, whose gradient,
    averaged over tokens drawn from pi_theta, is grad KL(pi_theta || pi_ref)."""
    logprobs, ref_logprobs, _ = _kl_cases()[0]
    if (hint := shape_hint(fn(logprobs.clone(), ref_logprobs.clone()), logprobs, "(B, R)")) is not None:
        return hint
    for logits, ref_logits in _kl_term_cases():
        V = logits.shape[0]
        try:
            with autograd_of_the_answer():  # an input changed in place after use: a hint, not torch's error
                got = expected_term_gradient(fn, logits, ref_logits)
        except ValueError as exc:
            if "autograd" in str(exc):
                return ("your term has no gradient at all: it does not depend on logprobs through "
                        "autograd (a .detach(), .item() or a tensor built anew cuts it)")
            raise
        truth = expected_kl_gradients(logits, ref_logits)
        right = truth["reverse KL"]
        if close(got, right, atol=1e-5):
            continue
        if got.abs().max() < 1e-6:
            return ("your term's gradient averages to zero over sampled tokens: that is k1 = log pi - "
                    "log pi_ref in the loss, whose gradient is grad log pi, and E[grad log pi] = 0. "
                    "It estimates the KL's value, not its gradient")
        if close(got, truth["forward KL"], atol=1e-5):
            return ("your term's gradient follows the forward KL(pi_ref || pi), not KL(pi || pi_ref): "
                    "that is k3 in the loss, as GRPO has it. Differentiate k3 = rho - 1 - log rho: "
                    "the rho term is the culprit. Try a term whose gradient is -log rho grad log pi")
        if close(got, right - truth["forward KL"], atol=1e-5):
            return ("your term's gradient is grad KL(pi || pi_ref) - grad KL(pi_ref || pi): that is k3 "
                    "in the reward (k3 held fixed, times log pi), TRL's PPO with kl_estimator='k3'. "
                    "The two KL gradients nearly cancel near pi_ref, so it hardly pulls. Weight "
                    "log pi by k1 = -log rho instead, or differentiate a term such as (log rho)^2 / 2")
        if close(got, -right, atol=1e-5):
            return ("opposite direction (wrong sign): adding your term to the loss would push away "
                    "from pi_ref")
        wrong_detach = expected_term_gradient(lambda lp, ref: (lp - ref) * lp.detach(), logits, ref_logits)
        if close(got, wrong_detach, atol=1e-5):
            return ("you detached the wrong factor: (log pi - log pi_ref) * log pi.detach() makes "
                    "log pi the fixed weight and lets k1 carry the gradient. Swap the roles, the "
                    "score-function form: (logprobs - ref_logprobs).detach() * logprobs")
        scale = float((got @ right) / (right @ right))
        if close(got, scale * right, atol=1e-5):
            return (f"parallel to the right gradient but {scale:.2f} times its size "
                    "(check the constant factor: (log rho)^2 has a 1/2 in front)")
        cosine = float(torch.nn.functional.cosine_similarity(got, right, dim=0))
        return (f"on a {V}-token vocabulary your term's expected gradient has cosine {cosine:.4f} with "
                "grad KL(pi || pi_ref) (1 would be parallel) and differs from it; the table above "
                "lists terms whose gradient is right")
    return None


# --------------------------------------------------------------------------- exercise 6.4


def _gae_cases():
    g = torch.Generator().manual_seed(1)
    out = []
    for B, R, lengths in ((3, 5, [5, 2, 1]), (4, 6, [6, 6, 3, 4])):
        mask = _mask(lengths, R)
        rewards = torch.randn(B, R, generator=g) * 0.1 * mask
        rewards[torch.arange(B), torch.tensor(lengths) - 1] += torch.randn(B, generator=g)
        values = torch.randn(B, R, generator=g) * mask
        out.append((rewards, values, mask))
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    out.insert(0, (rewards, torch.tensor([[0.5, 0.25, 0.75, 0.0]]), torch.tensor([[1, 1, 1, 0]])))
    return out


def _token_gae_with_factor(rewards, values, mask, gamma, factor, backwards: bool = True):
    """Token GAE whose recursion multiplies A_(t+1) by ``factor`` instead of gamma * lam; with
    ``backwards=False`` it runs forwards in time, A_t = delta_t + factor * A_(t-1)."""
    deltas = token_gae(rewards, values, mask, gamma, lam=0.0)[0]  # delta_t, 0 on padding
    m = mask.to(deltas.dtype)
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    steps = range(deltas.shape[1])
    for t in (reversed(steps) if backwards else steps):
        running = (deltas[:, t] + factor * running) * m[:, t]
        advantages[:, t] = running
    return advantages


@checker("GAE over response tokens with a mask", token_gae)
def check_token_gae(fn):
    """``fn(rewards, values, mask, gamma, lam)`` -> (advantages, returns), each (B, R)."""
    for gamma, lam in ((1.0, 0.95), (1.0, 1.0), (1.0, 0.0), (0.9, 0.8)):
        for rewards, values, mask in _gae_cases():
            # padding holds junk on purpose (rewards and values): a correct solution never reads it
            junk_rewards, junk_values = rewards + (1 - mask) * 5.0, values + (1 - mask) * 7.0
            out = fn(junk_rewards, junk_values, mask.clone(), gamma, lam)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                return f"return a pair (advantages, returns), got {describe_type(out)}"
            advantages, returns = out
            expected, expected_returns = token_gae(rewards, values, mask, gamma, lam)
            if (hint := shape_hint(advantages, expected, "(B, R)")) is not None:
                return "advantages: " + hint
            if (hint := shape_hint(returns, expected_returns, "(B, R)")) is not None:
                return "returns: " + hint
            # a buffer made with torch.zeros_like(mask) is an integer one: not the recursion's fault
            for name, got in (("advantages", advantages), ("returns", returns)):
                if (hint := dtype_hint(got, "values", flag="mask", flag_dtype=mask.dtype)) is not None:
                    return f"{name}: {hint}"
            real = mask.bool()
            for name, got in (("advantages", advantages), ("returns", returns)):
                # NaN != NaN: without this, a NaN was blamed on the junk in the padding below
                on_real = torch.where(real, got, torch.zeros_like(got)) if got.is_floating_point() else got
                if (hint := nan_hint(on_real, f"your {name} on a real token")) is not None:
                    return f"{hint} (gamma={gamma}, lam={lam})"
            if not close(advantages[real], expected[real]):
                where = f"(gamma={gamma}, lam={lam})"
                if close(advantages[real], expected_returns[real]) and close(returns[real], expected[real]):
                    return "you returned (returns, advantages): return the pair in the order (advantages, returns)"
                clean_rewards = fn(rewards.clone(), junk_values.clone(), mask.clone(), gamma, lam)[0]
                clean_values = fn(junk_rewards.clone(), values.clone(), mask.clone(), gamma, lam)[0]
                if not close(clean_values[real], advantages[real]):
                    return ("your advantages on real tokens change with the values the padding holds: "
                            "after a response's last real token there is no next state, so use "
                            "V(s_{t+1}) = 0 there, not the value stored in the padding " + where)
                if not close(clean_rewards[real], advantages[real]):
                    return ("your advantages on real tokens change with the rewards the padding holds: "
                            "no delta may come from the padding, or it flows back into the real "
                            "tokens through gamma * lam * A_(t+1) (mask the rewards, or restart the "
                            "recursion at each response's end) " + where)
                # whitened over the real tokens, or over every entry, padding included
                whitened = [whiten(expected, mask), *standardised(expected)]
                if any(close(advantages[real], w[real], atol=1e-4) for w in whitened):
                    return ("you whitened the advantages inside: return them as they are (the trainer "
                            "whitens once over the whole batch, after GAE, over real tokens only; the "
                            "returns need the raw ones)")
                hint = recursion_factor_hint(
                    lambda factor: close(advantages[real], _token_gae_with_factor(
                        rewards, values, mask, gamma, factor)[real]), gamma, lam)
                if hint is not None:
                    return f"{hint} {where}"
                if close(advantages[real], _token_gae_with_factor(rewards, values, mask, gamma, gamma * lam, backwards=False)[real]):
                    return ("your recursion runs forwards in time (t = 0, 1, ..., R - 1), so A_t adds "
                            "up delta_t and the deltas *before* it; GAE adds up delta_t and those that "
                            "follow it. The recursion A_t = delta_t + gamma * lam * A_(t+1) must run "
                            "backwards in time, from the last token to the first (for t in "
                            "reversed(range(R))) " + where)
                # gamma = 1 runs first: failing gamma = 0.9 means every gamma = 1 case passed
                unit_gamma = ("" if gamma == 1.0 else ". It was right for every gamma = 1 case: is "
                              "gamma missing somewhere (in delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), "
                              "or in gamma * lam * A_(t+1))?")
                idx = first_mismatch(torch.where(real, advantages, expected), expected)
                if lam == 0.0:
                    return f"with lam = 0 GAE is the TD residual delta_t; first difference at {idx} {where}"
                # an error at token t spoils every earlier token of its response through the
                # backward recursion: point at the last wrong token, where the error is made
                row = idx[0]
                last = (row, *last_mismatch(torch.where(real, advantages, expected)[row], expected[row]))
                end = int(mask[row].sum()) - 1
                after = ("its last real token: nothing follows it, so A_t must be its own delta_t"
                         if last[1] == end else "a token inside the response; the tokens after it are "
                         "right, so the error is in this token's own delta_t or in the "
                         "gamma * lam * A_(t+1) term")
                return (f"the last wrong token of response {row} is {last}, {after} "
                        f"(expected {float(expected[last]):.4f}, got {float(advantages[last]):.4f}) "
                        f"{where}. A_t = delta_t + gamma * lam * A_(t+1), computed backwards, "
                        "with V(s_{t+1}) = 0 after a response's last real token, also when it fills "
                        f"all R tokens (the episode ends there: nothing to bootstrap from){unit_gamma}")
            if not close(advantages, expected):
                return ("advantages must be 0 on padding: torch.where(mask.bool(), advantages, 0.0) (multiplying "
                        "by the mask is safe only while the padding is finite)")
            if not close(returns, expected_returns):
                return "returns = advantages + values on real tokens, 0 on padding"
    return device_hint(fn, *_gae_cases()[1], 1.0, 0.95)


# --------------------------------------------------------------------------- exercise 6.5


def _value_loss_reference(values, old_values, returns, mask, clip_range=0.2):
    return clipped_value_loss(values, old_values, returns, mask, clip_range)[0]


def _value_cases():
    g = torch.Generator().manual_seed(2)
    out = []
    for B, R, lengths in ((3, 5, [5, 2, 1]), (2, 7, [3, 7])):
        old = torch.randn(B, R, generator=g)
        values = old + torch.randn(B, R, generator=g) * 0.5  # some move further than the clip
        returns = torch.randn(B, R, generator=g)
        mask = _mask(lengths, R)
        out.append((values, old, returns, mask))
    return out


_CLIPS = {"clamp", "clip", "clamp_", "clip_", "clamp_min", "clamp_max"}


def _names_in(fn) -> set[str]:
    """The global and attribute names ``fn``'s code uses, nested functions and lambdas included."""
    code = getattr(inspect.unwrap(getattr(fn, "unwatched", fn)), "__code__", None)
    names, todo = set(), [code] if code is not None else []
    while todo:
        code = todo.pop()
        names.update(code.co_names)
        todo += [c for c in code.co_consts if inspect.iscode(c)]
    return names


def _no_clipping(fn, half_missing: bool = False) -> str:
    """The hint for a value loss equal to the unclipped one (times 2 if ``half_missing``). Where
    ``fn`` calls a clamp or clip somewhere (perhaps only on a denominator), it may be a clip that
    has no effect: one around the returns is never the larger squared error."""
    right = "V_clip = old_values + clip(values - old_values, -c, c)"
    loss = "loss = 0.5 * mean(max((values - returns)^2, (V_clip - returns)^2))"
    if _names_in(fn) & _CLIPS:
        what = (f"either {right} is missing, or your clip has no effect: a clip around the returns, "
                "returns + clip(values - returns, -c, c), is never the larger squared error, so the "
                "max always picks the unclipped one. Clip around old_values")
        if half_missing:
            return f"two mistakes: no clipping that acts ({what}), and no factor 0.5: {loss}"
        return f"your loss equals the unclipped 0.5 * mean((values - returns)^2): {what}"
    if half_missing:
        return f"two mistakes: no clipping ({right} is missing) and no factor 0.5: {loss}"
    return f"no clipping: {right} is missing"


def _on_every_case(fn, formula) -> bool:
    """Whether ``fn`` gives ``formula(values, old_values, returns, mask, clip_range)`` on every case."""
    for clip_range in (0.2, 0.5):
        for values, old, returns, mask in _value_cases():
            try:
                got = fn(values.clone().requires_grad_(True), old.clone(), returns.clone(),
                         mask.clone(), clip_range)
            except Exception:  # noqa: BLE001 - any failure here only means "not this formula"
                return False
            got = got[0] if isinstance(got, tuple) else got
            if not (isinstance(got, torch.Tensor) and got.numel() == 1
                    and close(got.detach().reshape(()), formula(values, old, returns, mask, clip_range))):
                return False
    return True


@checker("clipped value-head loss", _value_loss_reference)
def check_value_loss(fn):
    """``fn(values, old_values, returns, mask, clip_range)`` -> scalar loss."""
    from ppo_edu.objectives import masked_mean

    for clip_range in (0.2, 0.5):
        for values, old, returns, mask in _value_cases():
            values = values.clone().requires_grad_(True)
            junk_returns = returns + (1 - mask) * 100.0  # padding must not count
            got = fn(values, old.clone(), junk_returns, mask.clone(), clip_range)
            if isinstance(got, tuple):
                got = got[0]
            expected = _value_loss_reference(values.detach(), old, returns, mask, clip_range)
            if not isinstance(got, torch.Tensor) or got.numel() != 1:
                return f"return the loss as a scalar tensor, got {describe_type(got)}"
            grad = gradient(got, values)
            if grad is None:
                return no_gradient_hint("the loss", "`values`")
            if close(got.reshape(()), expected, atol=1e-5):
                expected_grad = gradient(_value_loss_reference(values, old, returns, mask, clip_range), values)
                if not close(grad, expected_grad, atol=1e-6):
                    return ("the value is right but the gradient w.r.t. `values` is not (both branches "
                            "of the max must depend on `values`: V_clip = old_values + clip(values - "
                            "old_values, -c, c), with nothing detached)")
                continue
            v = values.detach()
            clipped = old + torch.clamp(v - old, -clip_range, clip_range)
            err, err_c = (v - returns) ** 2, (clipped - returns) ** 2
            if close(got.reshape(()), -expected, atol=1e-5):
                return negated_value_loss_hint(f"with clip_range={clip_range}", got.item(), expected.item())
            if close(got.reshape(()), 0.5 * masked_mean(torch.minimum(err, err_c), mask)):
                return "use the max of the two squared errors (pessimistic, like L^CLIP), not the min"
            if close(got.reshape(()), 0.5 * masked_mean(err, mask)):
                return _no_clipping(fn)
            if close(got.reshape(()), masked_mean(torch.maximum(err, err_c), mask)):
                return "missing the factor 0.5: loss = 0.5 * mean(max(...))"
            if close(got.reshape(()), masked_mean(err, mask)):
                return _no_clipping(fn, half_missing=True)
            around_new = v + torch.clamp(old - v, -clip_range, clip_range)
            if close(got.reshape(()), 0.5 * masked_mean(torch.maximum(err, (around_new - returns) ** 2), mask)):
                return ("clip around the OLD value: V_clip = old_values + clip(values - old_values, -c, c) "
                        "stays within c of V_old (yours stays within c of the new V)")
            # the clipped error alone equals the max of the two means where the clipped one is the
            # larger mean: decided on every case, where the two differ
            if (close(got.reshape(()), 0.5 * masked_mean(err_c, mask))
                    and _on_every_case(fn, lambda v, o, r, m, c: 0.5 * masked_mean(
                        (o + torch.clamp(v - o, -c, c) - r) ** 2, m))):
                return ("you used only the clipped squared error (V_clip - returns)^2: it has no "
                        "gradient once values is more than c from old_values (the clip is flat there), "
                        "and it hides a larger unclipped error. Take the max of both squared errors, "
                        "token by token: 0.5 * mean(max((values - returns)^2, (V_clip - returns)^2))")
            if close(got.reshape(()), 0.5 * torch.maximum(masked_mean(err, mask), masked_mean(err_c, mask))):
                return ("take the max of the two squared errors token by token, inside the mean: "
                        "0.5 * mean(max(...)), not the max of the two means")
            if close(got.reshape(()), 0.5 * (torch.maximum(err, err_c) * mask).sum()):
                return "you summed over the real tokens: divide by their number (a masked mean)"
            if clip_range != 0.2 and close(got.reshape(()), _value_loss_reference(v, old, returns, mask, 0.2)):
                return f"called with clip_range={clip_range} you clipped at 0.2: is clip_range hard-coded?"
            per_sequence = (torch.maximum(err, err_c) * mask).sum(-1) / mask.sum(-1)
            if close(got.reshape(()), 0.5 * per_sequence.mean()):
                return ("you averaged each response, then the responses: that weighs a token of a short "
                        "response more than one of a long response. Average over all real tokens of the "
                        "batch at once (sum over real tokens / their number)")
            if (close(got.reshape(()), 0.5 * torch.maximum(err, err_c).mean()) or got.item() > 10
                    or close(got.reshape(()), 0.5 * (torch.maximum(err, err_c) * mask).mean())):
                return ("average over real tokens only (a masked mean: sum over real tokens, divided by "
                        "their number): padding must count neither in the sum nor in the count")
            return f"clip_range={clip_range}: expected {expected.item():.5f}, got {got.item():.5f}"
    values, old, returns, mask = _value_cases()[0]
    return device_hint(fn, values.clone().requires_grad_(True), old, returns, mask, 0.2)


__all__ = ["check_kl_penalty", "check_response_mask", "check_token_gae", "check_value_loss"]
