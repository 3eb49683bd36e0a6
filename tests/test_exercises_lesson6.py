"""Lesson 6 checkers: reject the stub and the typical wrong answers with a hint that says
what is wrong, accept correct solutions."""

from __future__ import annotations

import re

import pytest
import torch

from ppo_edu.exercises.lesson6 import (
    check_kl_loss_term,
    check_kl_penalty,
    check_response_mask,
    check_token_gae,
    check_value_loss,
)
from ppo_edu.objectives import masked_mean


def stub(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your solution")


# --------------------------------------------------------------------------- solutions


def my_response_mask(response_ids, eos_token_id):
    is_eos = (response_ids == eos_token_id).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).long()


def my_kl(logprobs, ref_logprobs, mask, estimator):
    log_r = ref_logprobs - logprobs
    kl = -log_r if estimator == "k1" else torch.exp(log_r) - 1 - log_r
    return kl * mask


def my_gae(rewards, values, mask, gamma, lam):
    values = values * mask
    B, R = values.shape
    advantages = torch.zeros_like(values)
    last = torch.zeros(B)
    for t in reversed(range(R)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < R else torch.zeros(B)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def my_value_loss(values, old_values, returns, mask, clip_range):
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def my_kl_loss_term(logprobs, ref_logprobs):
    return 0.5 * (logprobs - ref_logprobs) ** 2


SOLUTIONS = [(check_response_mask, my_response_mask), (check_kl_penalty, my_kl),
             (check_kl_loss_term, my_kl_loss_term),
             (check_token_gae, my_gae), (check_value_loss, my_value_loss)]


def test_stub_falls_back_to_the_reference(capsys):
    for check, _ in SOLUTIONS:
        assert check(stub) is check.reference
        assert "not implemented yet" in capsys.readouterr().out


def test_solutions_pass_and_are_returned(capsys):
    for check, fn in SOLUTIONS:
        assert check(fn) is fn, capsys.readouterr().out
        out = capsys.readouterr().out
        assert out.startswith("✅") and out.count("\n") == 1


def test_the_references_pass():
    for check, _ in SOLUTIONS:
        assert check.verify(check.reference) is None


# --------------------------------------------------------------------------- wrong answers


def test_masking_every_eos_is_caught():
    hint = check_response_mask.verify(lambda ids, eos: (ids != eos).long())
    assert "masked out its first EOS" in hint


def test_keeping_tokens_after_eos_is_caught():
    hint = check_response_mask.verify(lambda ids, eos: torch.ones_like(ids))
    assert "after the first EOS" in hint


def test_kl_with_the_wrong_sign_is_caught():
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(ref, lp, m, "k1") if est == "k1"
                                   else my_kl(lp, ref, m, est))
    assert "wrong sign" in hint


def test_kl_on_padding_is_caught():
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(lp, ref, torch.ones_like(m), est))
    assert "padding must contribute 0" in hint


def test_kl_on_padding_is_told_to_use_where_not_a_product_with_the_mask():
    # padding may hold -inf log-probabilities, where "* mask" gives NaN: recommend torch.where
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(lp, ref, torch.ones_like(m), est))
    assert "torch.where(mask.bool(), kl, 0.0)" in hint and "safe only while the padding is finite" in hint
    assert "(multiply by the mask)" not in hint
    assert check_kl_penalty.verify(lambda lp, ref, m, est: torch.where(
        m.bool(), my_kl(lp, ref, torch.ones_like(m), est), 0.0)) is None


def test_k3_with_the_ratio_upside_down_is_caught():
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(lp, ref, m, "k1") if est == "k1"
                                   else my_kl(ref, lp, m, "k3"))
    assert "reference over policy" in hint


def test_k3_answered_with_k1_is_caught():
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(lp, ref, m, "k1"))
    assert "you returned k1" in hint


def _gae_without_a_reset(mask_values: bool):
    """GAE that never resets the running advantage after a response's last token. Unmasked
    values: it bootstraps from the padding's junk values. Masked values: the padding's
    rewards still flow back into the real tokens (advantages leaking across episodes)."""
    def gae(rewards, values, mask, gamma, lam):
        values = values * mask if mask_values else values
        B, R = values.shape
        adv, last = torch.zeros_like(values), torch.zeros(B)
        for t in reversed(range(R)):
            nxt = values[:, t + 1] if t + 1 < R else torch.zeros(B)
            last = rewards[:, t] + gamma * nxt - values[:, t] + gamma * lam * last
            adv[:, t] = last
        return adv * mask, (adv + values) * mask
    return gae


def _k3(logprobs, ref_logprobs):
    log_rho = ref_logprobs - logprobs
    return torch.expm1(log_rho) - log_rho


@pytest.mark.parametrize("term", [
    lambda lp, ref: (lp - ref).detach() * lp,  # k1 as a score-function weight, as in the reward
    lambda lp, ref: (lp - lp.detach()).exp() * _k3(lp, ref),  # ratio * k3 (DeepSeek-V3.2)
])
def test_other_terms_with_the_right_gradient_pass(term):
    assert check_kl_loss_term.verify(term) is None


def test_k1_in_the_loss_is_caught_as_having_no_gradient():
    hint = check_kl_loss_term.verify(lambda lp, ref: lp - ref)
    assert "averages to zero" in hint and "k1" in hint


def test_k3_in_the_loss_is_caught_as_the_forward_kl():
    hint = check_kl_loss_term.verify(_k3)
    assert "forward KL" in hint and "GRPO" in hint


def test_k3_in_the_reward_is_caught_as_reverse_minus_forward():
    """k3 held fixed times log pi: TRL's PPO with kl_estimator="k3"."""
    hint = check_kl_loss_term.verify(lambda lp, ref: _k3(lp, ref).detach() * lp)
    assert "k3 in the reward" in hint and "nearly cancel" in hint


def test_kl_term_with_the_wrong_sign_is_caught():
    assert "wrong sign" in check_kl_loss_term.verify(lambda lp, ref: -0.5 * (lp - ref) ** 2)


def test_kl_term_without_the_half_is_caught():
    assert "2.00 times its size" in check_kl_loss_term.verify(lambda lp, ref: (lp - ref) ** 2)


def test_detached_kl_term_is_caught():
    assert "no gradient at all" in check_kl_loss_term.verify(lambda lp, ref: (0.5 * (lp - ref) ** 2).detach())


def test_kl_term_of_the_wrong_shape_is_caught():
    assert "shape" in check_kl_loss_term.verify(lambda lp, ref: (0.5 * (lp - ref) ** 2).sum(-1))


def test_kl_term_changing_logprobs_in_place_after_use_gets_the_in_place_hint():
    def adds_in_place(lp, ref):
        term = 0.5 * (lp * lp - 2 * lp * ref + ref * ref)
        lp.add_(0.0)  # same values; autograd saved the original
        return term

    hint = check_kl_loss_term.verify(adds_in_place)
    assert hint is not None and "changed a tensor in place after using it" in hint, hint
    assert "`logprobs` in place" in hint


@pytest.mark.parametrize(("mask_values", "blamed"), [(False, "with the values the padding holds: after a "
                                                      "response's last real token there is no next state"),
                                                     (True, "with the rewards the padding holds")])
def test_gae_reading_the_padding_is_caught(mask_values, blamed):
    # with its values masked, only the padding's rewards reach the real tokens: name that
    assert blamed in check_token_gae.verify(_gae_without_a_reset(mask_values))


def test_gae_returning_returns_first_is_caught():
    def swapped(rewards, values, mask, gamma, lam):
        advantages, returns = my_gae(rewards, values, mask, gamma, lam)
        return returns, advantages

    assert "you returned (returns, advantages)" in check_token_gae.verify(swapped)


def test_gae_with_advantages_on_padding_is_caught():
    def unmasked(rewards, values, mask, gamma, lam):
        adv, ret = my_gae(rewards, values, mask, gamma, lam)
        return adv + (1 - mask) * 0.5, ret

    assert "0 on padding" in check_token_gae.verify(unmasked)


def test_gae_forward_instead_of_backward_is_caught():
    def forward(rewards, values, mask, gamma, lam):
        adv, ret = my_gae(rewards, values, mask, gamma, lam)
        return adv.flip(1) * mask, ret

    assert "expected" in check_token_gae.verify(forward)


def test_value_loss_with_min_is_caught():
    def with_min(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        return 0.5 * masked_mean(torch.minimum((values - returns) ** 2, (clipped - returns) ** 2), mask)

    assert "max of the two" in check_value_loss.verify(with_min)


def test_value_loss_without_clipping_is_caught():
    hint = check_value_loss.verify(lambda v, old, ret, m, c: 0.5 * masked_mean((v - ret) ** 2, m))
    assert "no clipping" in hint


def test_value_loss_over_padding_is_caught():
    def unmasked(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()

    assert "real tokens only" in check_value_loss.verify(unmasked)


def test_value_loss_that_is_detached_is_caught():
    hint = check_value_loss.verify(lambda v, old, ret, m, c: my_value_loss(v.detach(), old, ret, m, c))
    assert "no gradient" in hint


@pytest.mark.parametrize("cut", [
    lambda loss: loss.detach().requires_grad_(),  # passes a requires_grad test, has no graph
    lambda loss: torch.tensor(loss.item(), requires_grad=True),
])
def test_value_loss_cut_from_the_graph_is_caught(cut):
    hint = check_value_loss.verify(lambda v, old, ret, m, c: cut(my_value_loss(v, old, ret, m, c)))
    assert "no gradient back to `values`" in hint


def test_value_loss_with_a_detached_clipped_branch_is_caught():
    """Inside the clip range both squared errors tie and torch.maximum splits the gradient
    between them: detaching the clipped branch halves it, with the loss's value unchanged."""
    def half(values, old, returns, mask, c):
        clipped = old + (values.detach() - old).clamp(-c, c)
        return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)

    assert "the value is right but the gradient" in check_value_loss.verify(half)


def test_value_loss_divided_by_all_tokens_is_caught():
    def over_all(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        err = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
        return 0.5 * (err * mask).mean()

    assert "their number" in check_value_loss.verify(over_all)


def test_k2_for_k3_is_caught():
    def k2(lp, ref, m, est):
        return my_kl(lp, ref, m, "k1") if est == "k1" else 0.5 * (lp - ref) ** 2 * m

    assert "you returned k2" in check_kl_penalty.verify(k2)


def test_kl_penalty_mismatch_prints_digits_that_differ():
    """A near miss (here k3 scaled by 1.02) must not print two numbers that look equal."""
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: my_kl(lp, ref, m, est) * (1.02 if est == "k3" else 1))
    expected, got = (float(x) for x in re.findall(r"expected ([0-9.e-]+), got ([0-9.e-]+)", hint)[0])
    assert got == pytest.approx(1.02 * expected, rel=1e-3) and got != expected


def test_kl_term_cut_from_the_graph_is_caught():
    hint = check_kl_loss_term.verify(lambda lp, ref: (0.5 * (lp - ref) ** 2).detach().requires_grad_())
    assert "no gradient at all" in hint


def test_a_response_without_eos_is_named():
    """argmax over a row with no EOS is 0: the mask would cut the response after token 0."""
    def argmax_first(ids, eos):
        first = (ids == eos).long().argmax(1)
        return (torch.arange(ids.shape[1])[None] <= first[:, None]).long()

    hint = check_response_mask.verify(argmax_first)
    assert "has no EOS" in hint and "all ones" in hint


@pytest.mark.parametrize("force", [torch.abs, lambda k: k.clamp(min=0)], ids=["abs", "clamp"])
def test_k1_forced_non_negative_is_named(force):
    hint = check_kl_penalty.verify(lambda lp, ref, m, est: force(my_kl(lp, ref, m, est)))
    assert "Keep its sign" in hint


def test_whitening_inside_gae_is_named_also_over_the_padding():
    def whiten_everything(r, v, m, g, lam):
        a, ret = my_gae(r * m, v * m, m, g, lam)
        return (a - a.mean()) / (a.std() + 1e-8) * m, ret

    assert "whitened the advantages inside" in check_token_gae.verify(whiten_everything)


def test_gae_returns_without_the_values_are_caught():
    # right advantages, returns = advantages alone (the values never added back): only the
    # returns check, after the advantages pass, catches it
    def no_values(rewards, values, mask, gamma, lam):
        adv, _ = my_gae(rewards, values, mask, gamma, lam)
        return adv, adv

    result = check_token_gae.run(no_values)
    assert not result.passed and "returns = advantages + values" in result.message, result.message
    assert result.fn is check_token_gae.reference


def test_gae_ignoring_gamma_is_caught():
    # RLHF usually runs with gamma = 1: an answer that hard-codes it is right on those cases,
    # so the checker must also call it with gamma < 1
    def gamma_one(rewards, values, mask, gamma, lam):
        return my_gae(rewards, values, mask, 1.0, lam)

    hint = check_token_gae.verify(gamma_one)
    assert hint is not None and "gamma=0.9" in hint


def test_kl_penalty_slightly_off_is_caught():
    # an epsilon inside the log (log(rho + 1e-3)) shifts every token by under 1e-2 here:
    # the checker must hold the per-token KL to a tight tolerance, not just "about right"
    def eps_in_log(lp, ref, m, est):
        log_r = torch.log(torch.exp(ref - lp) + 1e-3)
        kl = -log_r if est == "k1" else torch.exp(ref - lp) - 1 - log_r
        return kl * m

    assert "expected" in check_kl_penalty.verify(eps_in_log)


def test_kl_term_with_a_gradient_slightly_too_small_is_caught():
    # (log rho)^2 * 0.45 instead of * 0.5: parallel to the right gradient, 10% short. Small
    # vocabularies give small gradients, so a loose tolerance would pass it
    hint = check_kl_loss_term.verify(lambda lp, ref: 0.45 * (lp - ref) ** 2)
    assert hint is not None and "0.90 times its size" in hint


def test_a_mask_that_drops_the_batch_dimension_of_one_response_is_caught():
    # .squeeze() is harmless on B > 1 but turns a single response's (1, R) mask into (R,):
    # only the one-response case shows it, so the checker must not stop at the first case
    def squeezed(ids, eos):
        return my_response_mask(ids, eos).squeeze()

    hint = check_response_mask.verify(squeezed)
    assert hint is not None and "expected a tensor of shape (1, 8)" in hint


def test_gae_returning_only_the_advantages_is_told_to_return_a_pair():
    # a lone (B, R) tensor unpacks along B: without the pair check the learner would read a
    # ValueError from the checker's own unpacking instead of what to return
    hint = check_token_gae.verify(lambda r, v, m, g, lam: my_gae(r, v, m, g, lam)[0])
    assert hint is not None and "return a pair (advantages, returns)" in hint


def test_k3_that_goes_negative_is_told_it_never_is():
    # (rho - 1) + log rho: a sign slip on the log term, matching none of the named mistakes;
    # k3 >= 0 always, so a negative token is the clearest thing to point at
    def sign_slip(lp, ref, m, est):
        log_r = ref - lp
        return my_kl(lp, ref, m, "k1") if est == "k1" else (torch.exp(log_r) - 1 + log_r) * m

    assert "is never negative; yours is" in check_kl_penalty.verify(sign_slip)


def test_token_gae_hint_points_at_the_token_that_is_wrong_not_the_earliest_it_spoils():
    """Bootstrapping a response that fills all R tokens from its own last value is wrong at the
    last token only; the backward recursion carries it to every earlier one. The hint names the
    last wrong token, where the mistake is, not token 0."""
    def bootstraps_a_full_row(rewards, values, mask, gamma=1.0, lam=0.95):
        m = mask.float()
        r, v = rewards * m, values * m
        next_v = torch.cat([v[:, 1:], v[:, -1:]], 1)  # after the last column: its own value, not 0
        deltas = r + gamma * next_v - v
        advantages, running = torch.zeros_like(v), torch.zeros_like(v[:, 0])
        for t in reversed(range(v.shape[1])):
            running = (deltas[:, t] + gamma * lam * running) * m[:, t]
            advantages[:, t] = running
        return advantages, (advantages + v) * m

    hint = check_token_gae.verify(bootstraps_a_full_row)
    assert hint is not None and "last wrong token of response 0 is (0, 4), its last real token" in hint
    assert "nothing to bootstrap from" in hint


def _gae_with(factor, delta_gamma=None):
    """my_gae with ``factor(gamma, lam)`` in front of A_(t+1) and ``delta_gamma(gamma)`` in delta_t."""
    def gae(rewards, values, mask, gamma, lam):
        values = values * mask
        B, R = values.shape
        advantages, last = torch.zeros_like(values), torch.zeros(B)
        g = gamma if delta_gamma is None else delta_gamma(gamma)
        for t in reversed(range(R)):
            next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < R else torch.zeros(B)
            delta = rewards[:, t] * mask[:, t] + g * next_value - values[:, t]
            last = (delta + factor(gamma, lam) * last) * mask[:, t]
            advantages[:, t] = last
        return advantages, (advantages + values) * mask
    return gae


@pytest.mark.parametrize("factor, named", [
    # gamma = 1 in the first cases: gamma alone and no factor at all give the same numbers there
    (lambda g, lm: g, "multiplies A_(t+1) by gamma only (gamma = 1 here: or by nothing at all): lam is missing"),
    (lambda g, lm: 1.0, "multiplies A_(t+1) by gamma only (gamma = 1 here: or by nothing at all): lam is missing"),
    # right for every gamma = 1 case, wrong at gamma = 0.9
    (lambda g, lm: lm, "multiplies A_(t+1) by lam only: gamma is missing"),
])
def test_gae_with_a_wrong_factor_of_the_next_advantage_is_told_which(factor, named):
    """Leaving lam out of gamma * lam * A_(t+1) was blamed on a token's own delta_t
    ("expected 0.7375, got 0.7500"); leaving gamma out passed every gamma = 1 case, then got
    the same hint at gamma = 0.9."""
    hint = check_token_gae.verify(_gae_with(factor))
    assert hint is not None and named in hint and "A_t = delta_t + gamma * lam * A_(t+1)" in hint, hint
    assert "own delta_t" not in hint
    assert check_token_gae.verify(_gae_with(lambda g, lm: g * lm)) is None


def test_gae_wrong_only_where_gamma_is_not_1_asks_whether_gamma_is_missing():
    hint = check_token_gae.verify(_gae_with(lambda g, lm: g * lm, delta_gamma=lambda g: 1.0))  # r + V' - V
    assert hint is not None and "(gamma=0.9, lam=0.8)" in hint
    assert "It was right for every gamma = 1 case: is gamma missing somewhere" in hint
    # gamma twice: no named mistake, so the per-token hint, which must not blame delta_t alone
    hint = check_token_gae.verify(_gae_with(lambda g, lm: g * g * lm))
    assert hint is not None and "own delta_t or in the gamma * lam * A_(t+1) term" in hint
    assert "is gamma missing somewhere" in hint


def test_a_mask_that_stops_before_the_first_eos_is_told_the_eos_belongs_to_the_response():
    # a cumsum shifted the wrong way: 1 only while the *next* token has seen no EOS
    def shifted_the_wrong_way(ids, eos):
        count = (ids == eos).long().cumsum(1)
        following = torch.cat([count[:, 1:], count[:, -1:]], 1)
        return (following == 0).long()

    hint = check_response_mask.verify(shifted_the_wrong_way)
    assert hint is not None and "your mask stops before its first EOS (token 2)" in hint, hint
    assert "The first EOS belongs to the response" in hint and "expected 1, got 0" not in hint
    # masking the EOS itself keeps its own hint
    assert "masked out its first EOS" in check_response_mask.verify(lambda ids, eos: (ids != eos).long())


@pytest.mark.parametrize("wrong", [
    lambda lp, ref, m, est: my_kl(lp, ref, m, "k3" if est == "k1" else "k1"),  # branches swapped
    lambda lp, ref, m, est: my_kl(lp, ref, m, "k3"),  # always k3
], ids=["swapped", "always-k3"])
def test_k1_answered_with_k3_is_caught(wrong):
    hint = check_kl_penalty.verify(wrong)
    assert hint is not None and "with estimator='k1' you returned k3" in hint, hint


def test_kl_term_with_the_wrong_sign_does_not_call_it_the_right_direction():
    for wrong in (lambda lp, ref: -0.5 * (lp - ref) ** 2, lambda lp, ref: (ref - lp).detach() * lp):
        hint = check_kl_loss_term.verify(wrong)
        assert "opposite direction (wrong sign)" in hint and "right direction" not in hint, hint


def test_kl_term_with_the_wrong_factor_detached_is_told_which_to_detach():
    hint = check_kl_loss_term.verify(lambda lp, ref: (lp - ref) * lp.detach())
    assert hint is not None and "you detached the wrong factor" in hint, hint
    assert "(logprobs - ref_logprobs).detach() * logprobs" in hint and "cosine" not in hint


def _gae_into(buffer, cast=lambda a: a, returns_buffer=None):
    """my_gae with its advantages stored into ``buffer(mask)`` (then ``cast``), its returns into
    ``returns_buffer(mask)`` when given: the recursion itself is right."""
    def gae(rewards, values, mask, gamma, lam):
        right, right_returns = my_gae(rewards, values, mask, gamma, lam)
        advantages = buffer(mask)
        advantages[:] = right
        returns = right_returns
        if returns_buffer is not None:
            returns = returns_buffer(mask)
            returns[:] = right_returns
        return cast(advantages), returns
    return gae


@pytest.mark.parametrize("wrong, said", [
    (_gae_into(torch.zeros_like), "advantages: your result is an integer tensor (torch.int64)"),
    (_gae_into(lambda m: torch.zeros_like(m, dtype=torch.bool)), "advantages: your result is a bool tensor"),
    (_gae_into(lambda m: torch.zeros_like(m, dtype=torch.float32), cast=lambda a: a.long()),
     "advantages: your result is an integer tensor (torch.int64)"),
    (_gae_into(lambda m: torch.zeros_like(m, dtype=torch.float32), returns_buffer=torch.zeros_like),
     "returns: your result is an integer tensor (torch.int64)"),
], ids=["long-buffer", "bool-buffer", "long-cast", "long-returns"])
def test_gae_into_a_buffer_of_the_mask_dtype_is_named_not_the_recursion(wrong, said):
    hint = check_token_gae.verify(wrong)
    assert hint is not None and said in hint and "it must be floating point" in hint, hint
    assert "torch.zeros_like(mask" in hint and "torch.zeros_like(values)" in hint
    assert "terminated" not in hint and "last wrong token" not in hint


def test_gae_recursion_run_forwards_in_time_is_told_to_run_backwards():
    def forwards(rewards, values, mask, gamma, lam):
        m = mask.float()
        r, v = rewards * m, values * m
        deltas = r + gamma * torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], 1) - v
        advantages, running = torch.zeros_like(v), torch.zeros_like(v[:, 0])
        for t in range(v.shape[1]):  # forwards: A_t built from the deltas before t
            running = (deltas[:, t] + gamma * lam * running) * m[:, t]
            advantages[:, t] = running
        return advantages, (advantages + v) * m

    hint = check_token_gae.verify(forwards)
    assert hint is not None and "your recursion runs forwards in time" in hint, hint
    assert "must run backwards in time, from the last token to the first" in hint
    assert "last wrong token" not in hint


def test_value_loss_with_only_the_clipped_error_is_told_to_take_the_max_of_both():
    def clipped_only(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        return 0.5 * masked_mean((clipped - returns) ** 2, mask)

    hint = check_value_loss.verify(clipped_only)
    assert hint is not None and "you used only the clipped squared error" in hint, hint
    assert "max of both squared errors, token by token" in hint and "max of the two means" not in hint
    # the max of the two means keeps its own hint
    def max_of_means(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        return 0.5 * torch.maximum(masked_mean((values - returns) ** 2, mask),
                                   masked_mean((clipped - returns) ** 2, mask))

    assert "not the max of the two means" in check_value_loss.verify(max_of_means)


def test_value_loss_clipped_around_the_returns_is_told_to_clip_around_old_values():
    def around_returns(values, old, returns, mask, c):
        clipped = returns + torch.clamp(values - returns, -c, c)  # never the larger error: no effect
        return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)

    hint = check_value_loss.verify(around_returns)
    assert hint is not None and "or your clip has no effect" in hint, hint
    assert "Clip around old_values" in hint and "a clip around the returns" in hint

    # a clamp on the denominator alone is no value clip: the hint must leave both readings open
    def clamped_denominator(values, old, returns, mask, c):
        m = mask.float()
        return 0.5 * ((values - returns) ** 2 * m).sum() / m.sum().clamp(min=1)

    hint = check_value_loss.verify(clamped_denominator)
    assert hint.startswith("your loss equals the unclipped") and "either V_clip" in hint, hint


def test_a_negated_value_loss_is_told_its_sign():
    def negated(values, old, returns, mask, c):
        clipped = old + (values - old).clamp(-c, c)
        return -0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)

    hint = check_value_loss.verify(negated)
    assert hint is not None and "minus the loss" in hint and "with no minus sign" in hint, hint


def test_value_loss_unclipped_and_without_the_half_names_both():
    hint = check_value_loss.verify(lambda v, old, ret, m, c: masked_mean((v - ret) ** 2, m))
    assert hint is not None and "two mistakes: no clipping" in hint and "no factor 0.5" in hint, hint
