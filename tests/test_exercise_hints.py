"""Checkers, across lessons: answers that change their inputs in place, NaN, numpy or integer
results, dtypes other than float32, (T, N) inputs, and the hints of typical mistakes whose
first symptom points elsewhere. Each wrong answer here was accepted, crashed the checker or
got a misleading hint before."""

from __future__ import annotations

import pytest
import torch

from ppo_edu.advantages import bootstrap_values, compute_gae, td_residuals
from ppo_edu.exercises import _harness, lesson1, lesson2, lesson3, lesson4, lesson5, lesson6
from ppo_edu.lm.bradley_terry import bradley_terry_loss
from ppo_edu.lm.reward import last_token_scores
from ppo_edu.objectives import masked_mean, probability_ratio
from ppo_edu.ppo import clipped_value_loss, explained_variance
from ppo_edu.rlhf.advantages import token_gae, whiten
from ppo_edu.rlhf.kl import kl_penalty

# --------------------------------------------------------------------------- in place


def test_an_answer_that_changes_its_input_in_place_is_rejected_and_the_argument_named(capsys):
    def shifts_the_callers_values(values, terminated, truncated, final_values, next_values):
        out = bootstrap_values(values, terminated, truncated, final_values, next_values)
        values.copy_(out)  # right result, but the caller's tensor is gone
        return values

    assert lesson3.check_bootstrap_values(shifts_the_callers_values) is bootstrap_values
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "❌" in out
    assert "changed its argument `values` in place" in out and "values.clone()" in out


def test_in_place_answers_are_rejected_by_every_checker_that_passes_tensors():
    def ratio_eating_old(new, old):
        out = probability_ratio(new, old)
        old.zero_()
        return out

    def td_in_rewards(rewards, values, terminated, truncated, final_values, next_values, gamma):
        rewards += gamma * bootstrap_values(values, terminated, truncated, final_values, next_values) - values
        return rewards

    def gae_zeroing_values(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        out = compute_gae(rewards, values, terminated, truncated, final_values, next_values, gamma=gamma, lam=lam)
        values.zero_()
        return out

    def scores_zeroing_padding(token_scores, attention_mask):
        out = last_token_scores(token_scores, attention_mask)
        token_scores.mul_(attention_mask)
        return out

    def kl_in_logprobs(logprobs, ref_logprobs, mask, estimator):
        out = kl_penalty(logprobs, ref_logprobs, mask, estimator)
        logprobs.sub_(ref_logprobs)
        return out

    def gae_masking_rewards(rewards, values, mask, gamma, lam):
        rewards *= mask
        values *= mask
        return token_gae(rewards, values, mask, gamma, lam)

    for check, wrong, argument in (
        (lesson1.check_ratio, ratio_eating_old, "old_logprobs"),
        (lesson3.check_td_residuals, td_in_rewards, "rewards"),
        (lesson3.check_gae, gae_zeroing_values, "values"),
        (lesson5.check_last_token_scores, scores_zeroing_padding, "token_scores"),
        (lesson6.check_kl_penalty, kl_in_logprobs, "logprobs"),
        (lesson6.check_token_gae, gae_masking_rewards, "rewards"),
    ):
        hint = check.verify(wrong)
        assert hint is not None and f"changed its argument `{argument}` in place" in hint, (check, hint)


def test_an_in_place_change_that_autograd_refuses_gets_the_in_place_hint(capsys):
    """`logprobs -= old_logprobs` on an argument that requires grad: torch raises before the
    watcher could compare, and its message alone did not say which input or why it matters."""
    def subtracts_in_logprobs(logprobs, old_logprobs):
        logprobs -= old_logprobs
        return torch.exp(logprobs)

    def shifts_values(values, old_values, returns, epsilon):
        values -= old_values
        return clipped_value_loss(values + old_values, old_values, returns, epsilon)

    for check, wrong, argument in ((lesson1.check_ratio, subtracts_in_logprobs, "logprobs"),
                                   (lesson4.check_value_loss, shifts_values, "values")):
        hint = check.verify(wrong)
        assert hint is not None and f"tried to change its argument `{argument}` in place" in hint, hint
        assert f"{argument}.clone()" in hint
        assert hint.endswith("RuntimeError: a leaf Variable that requires grad is being used in an "
                             "in-place operation.")
    assert lesson1.check_ratio(subtracts_in_logprobs) is probability_ratio
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "❌" in out and "`logprobs` in place" in out
    assert lesson1.check_ratio.verify(lambda new, old: torch.exp(new - old)) is None

    def both_scores(r_chosen, r_rejected):  # the loss takes two arguments that require grad
        r_rejected -= r_chosen
        return bradley_terry_loss(torch.zeros_like(r_rejected), r_rejected)

    hint = lesson5.check_bradley_terry_loss.verify(both_scores)
    assert "tried to change its argument `r_rejected` in place" in hint and "r_chosen" not in hint

    def both_changed(r_chosen, r_rejected):
        r_chosen -= r_rejected
        r_rejected -= r_rejected
        return bradley_terry_loss(r_chosen, r_rejected)

    hint = lesson5.check_bradley_terry_loss.verify(both_changed)
    assert "tried to change its argument `r_chosen` or `r_rejected` in place" in hint


def test_a_refused_in_place_change_of_a_tensor_the_function_made_is_not_blamed_on_an_input():
    def own_leaf(logprobs, old_logprobs):
        out = torch.zeros_like(logprobs, requires_grad=True)
        out += torch.exp(logprobs - old_logprobs)
        return out

    with pytest.raises(RuntimeError, match="leaf Variable"):  # torch's error, as it was raised
        lesson1.check_ratio.verify(own_leaf)
    message = lesson1.check_ratio.run(own_leaf).message
    assert "your function raised RuntimeError: a leaf Variable" in message and "argument" not in message


def test_the_references_still_pass_with_their_inputs_watched():
    for check in (lesson1.check_ratio, lesson1.check_cpi, lesson2.check_clipped_objective,
                  lesson2.check_clip_fraction, lesson3.check_bootstrap_values, lesson3.check_td_residuals,
                  lesson3.check_gae, lesson4.check_value_loss, lesson4.check_explained_variance,
                  lesson5.check_bradley_terry_loss, lesson5.check_last_token_scores,
                  lesson6.check_response_mask, lesson6.check_kl_penalty, lesson6.check_kl_loss_term,
                  lesson6.check_token_gae, lesson6.check_value_loss):
        assert check.verify(check.reference) is None, check.__name__


# --------------------------------------------------------------------------- NaN and types


def _clipped(new, old, adv, eps):  # L^CLIP written out (the package's refuses NaN input)
    ratio = torch.exp(new - old)
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv).mean()


@pytest.mark.filterwarnings("ignore:std\\(\\)")
def test_l_clip_that_is_nan_on_single_samples_is_rejected():
    def normalises_inside(new, old, adv, eps):  # the std of one sample is nan
        return _clipped(new, old, (adv - adv.mean()) / adv.std(), eps)

    hint = lesson2.check_clipped_objective.verify(normalises_inside)
    assert "your L^CLIP is nan" in hint and "normalise the advantages inside" in hint

    def nan_only_alone(new, old, adv, eps):  # right on batches, nan on one sample
        out = _clipped(new, old, adv, eps)
        return out * float("nan") if adv.numel() == 1 else out

    assert "your L^CLIP is nan" in lesson2.check_clipped_objective.verify(nan_only_alone)


def test_l_clip_normalised_inside_with_the_population_std_is_named():
    def normalises_inside(new, old, adv, eps):  # a lone advantage becomes 0
        return _clipped(new, old, (adv - adv.mean()) / (adv.std(correction=0) + 1e-8), eps)

    assert "0 for every single sample" in lesson2.check_clipped_objective.verify(normalises_inside)


def test_a_nan_clip_fraction_is_rejected():
    hint = lesson2.check_clip_fraction.verify(lambda new, old, eps: torch.tensor(float("nan")))
    assert hint is not None and "nan" in hint


def test_numpy_results_are_named_as_numpy():
    hint = lesson1.check_cpi.verify(lambda new, old, adv: (torch.exp(new - old) * adv).detach().numpy().mean())
    assert "numpy value" in hint and "torch tensor" in hint
    hint = lesson5.check_bradley_terry_loss.verify(lambda c, r: bradley_terry_loss(c, r).detach().numpy())
    assert "numpy value" in hint

    def gae_numpy_returns(*args, gamma, lam):
        advantages, returns = compute_gae(*args, gamma=gamma, lam=lam)
        return advantages, returns.numpy()

    assert lesson3.check_gae.verify(gae_numpy_returns).startswith("returns: expected a tensor")

    def token_gae_numpy_returns(rewards, values, mask, gamma, lam):
        advantages, returns = token_gae(rewards, values, mask, gamma, lam)
        return advantages, returns.numpy()

    assert lesson6.check_token_gae.verify(token_gae_numpy_returns).startswith("returns: expected a tensor")


def test_float64_answers_are_accepted_not_crashed_on():
    assert lesson4.check_value_loss.verify(lambda v, o, r, e: clipped_value_loss(v, o, r, e).double()) is None
    assert lesson5.check_last_token_scores.verify(lambda s, m: last_token_scores(s, m).double()) is None


def test_positions_returned_instead_of_scores_get_a_hint_not_a_crash():
    def forgot_the_gather(token_scores, attention_mask):
        positions = torch.arange(attention_mask.size(1)) * attention_mask
        return positions.argmax(-1)

    hint = lesson5.check_last_token_scores.verify(forgot_the_gather)
    assert "positions, not scores" in hint and "torch.int64" in hint


def test_a_gae_pair_may_be_a_list():
    assert lesson3.check_gae.verify(lambda *a, gamma, lam: list(compute_gae(*a, gamma=gamma, lam=lam))) is None
    assert lesson6.check_token_gae.verify(lambda r, v, m, g, lam: list(token_gae(r, v, m, g, lam))) is None


# --------------------------------------------------------------------------- lesson 3 hints


def _nxt(values, terminated, truncated, final_values, next_values):
    return bootstrap_values(values, terminated, truncated, final_values, next_values)


def test_td_residual_mistakes_are_named():
    def no_baseline(r, v, term, trunc, final, nxt, gamma):
        return r + gamma * _nxt(v, term, trunc, final, nxt)

    def gamma_on_reward(r, v, term, trunc, final, nxt, gamma):
        return gamma * (r + _nxt(v, term, trunc, final, nxt)) - v

    def gamma_fixed(r, v, term, trunc, final, nxt, gamma):
        return td_residuals(r, v, term, trunc, final, nxt, gamma=0.99)

    def previous_baseline(r, v, term, trunc, final, nxt, gamma):  # V(s_{t-1}), not V(s_t)
        before = torch.cat([v[:1], v[:-1]])
        return r + gamma * _nxt(v, term, trunc, final, nxt) - before

    assert "forgot to subtract V(s_t)" in lesson3.check_td_residuals.verify(no_baseline)
    assert "not the reward r_t" in lesson3.check_td_residuals.verify(gamma_on_reward)
    assert "is gamma hard-coded?" in lesson3.check_td_residuals.verify(gamma_fixed)
    hint = lesson3.check_td_residuals.verify(previous_baseline)  # wrong inside episodes too
    assert "V(s_t) = values[t]" in hint and "check which V(s_{t+1})" not in hint


def _gae_loop(case_args, gamma, lam, stop, start=None):
    rewards, values, terminated, truncated, final_values, next_values = case_args
    deltas = td_residuals(*case_args, gamma=gamma)
    keep = 1.0 - stop(terminated, truncated).float()
    adv = torch.zeros_like(deltas)
    running = torch.zeros_like(next_values) if start is None else start(next_values)
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * lam * keep[t] * running
        adv[t] = running
    return adv, adv + values


def test_gae_mistakes_whose_first_symptom_is_elsewhere_are_named():
    def truncated_only(*args, gamma, lam):
        return _gae_loop(args, gamma, lam, lambda term, trunc: trunc)

    def from_next_values(*args, gamma, lam):
        return _gae_loop(args, gamma, lam, lambda term, trunc: term | trunc, start=lambda nv: nv.clone())

    def normalised(*args, gamma, lam):
        adv, _ = compute_gae(*args, gamma=gamma, lam=lam)
        return (adv - adv.mean()) / (adv.std() + 1e-8), adv + args[1]

    def swapped(*args, gamma, lam):
        adv, ret = compute_gae(*args, gamma=gamma, lam=lam)
        return ret, adv

    assert "leak across the termination at index (1, 0)" in lesson3.check_gae.verify(truncated_only)
    assert "starts from next_values" in lesson3.check_gae.verify(from_next_values)
    assert "normalised the advantages inside GAE" in lesson3.check_gae.verify(normalised)
    assert "(returns, advantages)" in lesson3.check_gae.verify(swapped)


# --------------------------------------------------------------------------- lesson 4 hints


def _v_clip(v, old, eps):
    return old + torch.clamp(v - old, -eps, eps)


def test_value_loss_mistakes_are_named():
    def max_of_means(v, old, r, eps):
        return 0.5 * torch.maximum(((v - r) ** 2).mean(), ((_v_clip(v, old, eps) - r) ** 2).mean())

    def around_new(v, old, r, eps):
        return 0.5 * torch.maximum((v - r) ** 2, (v + torch.clamp(old - v, -eps, eps) - r) ** 2).mean()

    def old_itself(v, old, r, eps):
        return 0.5 * torch.maximum((v - r) ** 2, (old - r) ** 2).mean()

    def summed(v, old, r, eps):
        return 0.5 * torch.maximum((v - r) ** 2, (_v_clip(v, old, eps) - r) ** 2).sum()

    def eps_fixed(v, old, r, eps):
        return clipped_value_loss(v, old, r, 0.2)

    assert "not the max of the two means" in lesson4.check_value_loss.verify(max_of_means)
    assert "clip around the OLD value" in lesson4.check_value_loss.verify(around_new)
    assert "not old_values itself" in lesson4.check_value_loss.verify(old_itself)
    assert "you summed over the 64 samples" in lesson4.check_value_loss.verify(summed)
    assert "is epsilon hard-coded?" in lesson4.check_value_loss.verify(eps_fixed)


def test_explained_variance_is_checked_on_a_rollout_shaped_input():
    def per_column(predictions, targets):  # right on (n,), raises on (T, N)
        var = targets.var(dim=0)
        if var == 0:
            return float("nan")
        return float(1 - (targets - predictions).var(dim=0) / var)

    hint = lesson4.check_explained_variance.verify(per_column)
    assert "(T, N) = (40, 5) rollout" in hint and ".var() with no dim" in hint
    per_row = lesson4.check_explained_variance.verify(
        lambda p, t: 1 - (t - p).var(-1) / t.var(-1) if t.dim() == 2 else explained_variance(p, t))
    assert "one number over every entry" in per_row
    assert explained_variance(torch.ones(3, 2), torch.arange(6.0).reshape(3, 2)) < 1  # the reference takes it


def test_explained_variance_dividing_by_a_zero_variance_gets_the_nan_hint():
    def python_floats(predictions, targets):
        return 1 - (targets - predictions).var().item() / targets.var().item()

    assert "return float('nan')" in lesson4.check_explained_variance.verify(python_floats)


# --------------------------------------------------------------------------- lesson 6 hints


def test_rlhf_value_loss_mistakes_are_named():
    def parts(v, old, r, m, c):
        err, err_c = (v - r) ** 2, (old + torch.clamp(v - old, -c, c) - r) ** 2
        return err, err_c, m.to(v.dtype)

    def per_sequence(v, old, r, m, c):
        err, err_c, m = parts(v, old, r, m, c)
        return 0.5 * ((torch.maximum(err, err_c) * m).sum(-1) / m.sum(-1)).mean()

    def around_new(v, old, r, m, c):
        err, _, m = parts(v, old, r, m, c)
        return 0.5 * masked_mean(torch.maximum(err, (v + torch.clamp(old - v, -c, c) - r) ** 2), m)

    def max_of_means(v, old, r, m, c):
        err, err_c, m = parts(v, old, r, m, c)
        return 0.5 * torch.maximum(masked_mean(err, m), masked_mean(err_c, m))

    def masked_sum(v, old, r, m, c):
        err, err_c, m = parts(v, old, r, m, c)
        return 0.5 * (torch.maximum(err, err_c) * m).sum()

    def clip_fixed(v, old, r, m, c):
        return lesson6._value_loss_reference(v, old, r, m, 0.2)

    check = lesson6.check_value_loss
    assert "you averaged each response, then the responses" in check.verify(per_sequence)
    assert "clip around the OLD value" in check.verify(around_new)
    assert "not the max of the two means" in check.verify(max_of_means)
    assert "you summed over the real tokens" in check.verify(masked_sum)
    assert "is clip_range hard-coded?" in check.verify(clip_fixed)


def test_token_gae_whitened_inside_is_named():
    def whitened(rewards, values, mask, gamma, lam):
        advantages, returns = token_gae(rewards, values, mask, gamma, lam)
        return whiten(advantages, mask), returns

    assert "whitened the advantages inside" in lesson6.check_token_gae.verify(whitened)


# --------------------------------------------------------------------------- GPU runtimes


def test_a_function_that_makes_cpu_tensors_is_caught_before_a_gpu_lesson_calls_it(monkeypatch):
    """Lessons 5 and 6 call the learner's functions on the GPU. With no GPU here, the meta
    device stands in for it: a CPU tensor made inside the function clashes with it the same way."""
    monkeypatch.setattr(_harness, "accelerator", lambda: torch.device("meta"))

    def cpu_positions(token_scores, attention_mask):
        positions = (torch.arange(attention_mask.size(1)) * attention_mask).argmax(-1)
        return token_scores.gather(1, positions[:, None]).squeeze(1)

    def device_positions(token_scores, attention_mask):
        positions = (torch.arange(attention_mask.size(1), device=attention_mask.device)
                     * attention_mask).argmax(-1)
        return token_scores.gather(1, positions[:, None]).squeeze(1)

    def kl_with_cpu_zeros(logprobs, ref_logprobs, mask, estimator):
        log_ratio = logprobs - ref_logprobs
        per_token = log_ratio if estimator == "k1" else torch.expm1(-log_ratio) + log_ratio
        return torch.where(mask.bool(), per_token, torch.zeros(logprobs.shape))

    hint = lesson5.check_last_token_scores.verify(cpu_positions)
    assert "right on CPU tensors but fails on meta ones" in hint and "device=x.device" in hint
    assert lesson5.check_last_token_scores.verify(device_positions) is None
    assert "fails on meta ones" in lesson6.check_kl_penalty.verify(kl_with_cpu_zeros)
    # the Bradley-Terry loss as a BCE against a target of ones made on the CPU (train_reward_model
    # calls it on the GPU)
    def bce_with_cpu_target(r_chosen, r_rejected):
        return torch.nn.functional.binary_cross_entropy_with_logits(
            r_chosen - r_rejected, torch.ones(len(r_chosen)))

    assert "fails on meta ones" in lesson5.check_bradley_terry_loss.verify(bce_with_cpu_target)

    # a detour through numpy passes on the CPU and raises a TypeError on the GPU
    def kl_through_numpy(logprobs, ref_logprobs, mask, estimator):
        log_ratio = torch.from_numpy(logprobs.numpy() - ref_logprobs.numpy())
        per_token = log_ratio if estimator == "k1" else torch.expm1(-log_ratio) + log_ratio
        return torch.where(mask.bool(), per_token, 0.0)

    hint = lesson6.check_kl_penalty.verify(kl_through_numpy)
    assert "fails on meta ones" in hint and "numpy works on CPU tensors only" in hint
    monkeypatch.setattr(_harness, "accelerator", lambda: None)  # a CPU runtime: nothing to check
    assert lesson5.check_last_token_scores.verify(cpu_positions) is None


def test_the_gpu_check_is_cuda_only_apple_mps_is_not_checked(monkeypatch):
    """The tiny models run on the CPU everywhere, so no lesson calls a learner's function on
    MPS; checking there would fail a correct float64 answer (MPS has no float64)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _harness.accelerator() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _harness.accelerator() == torch.device("cuda")


# --------------------------------------------------------------------------- the harness


def test_close_requires_the_same_shape_not_a_broadcastable_one():
    # torch.allclose broadcasts: a single right value would otherwise match a whole tensor
    assert not _harness.close(torch.ones(1), torch.ones(3))
    assert not _harness.close(torch.ones(3, 1), torch.ones(3, 3))
    assert _harness.close(torch.ones(3), torch.ones(3))


def test_nan_hint_names_an_infinity_too():
    # an overflowing exp() gives inf, not nan: the hint must fire on any non-finite entry
    hint = _harness.nan_hint(torch.tensor([1.0, float("inf"), 2.0]), "your L^CLIP")
    assert hint is not None and "inf" in hint and "index (1,)" in hint
    assert _harness.nan_hint(torch.tensor([1.0, 2.0]), "your L^CLIP") is None


# --------------------------------------------------------------------------- changed after use


def test_an_input_changed_in_place_after_use_gets_a_hint_not_autograds_error():
    """``advantages.clamp_(-10, 10)`` after ``r * advantages``: the values stay the same (the
    watcher sees nothing), but autograd saved the original, and the checker's own gradient call
    raised "modified by an inplace operation", which read as the learner's function failing."""
    def clamps_after_use(logprobs, old_logprobs, advantages, epsilon):
        ratio = torch.exp(logprobs - old_logprobs)
        unclipped = ratio * advantages
        advantages.clamp_(-10, 10)
        return torch.minimum(unclipped, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages).mean()

    def cpi_clamps_after_use(logprobs, old_logprobs, advantages):
        objective = (torch.exp(logprobs - old_logprobs) * advantages).mean()
        advantages.clamp_(-10, 10)
        return objective

    for check, wrong in ((lesson2.check_clipped_objective, clamps_after_use),
                         (lesson1.check_cpi, cpi_clamps_after_use)):
        message = check.run(wrong).message
        assert "changed a tensor in place after using it" in message, message
        assert "changed its argument `advantages` in place: if that came after a line" in message
        assert "out-of-place op (x = x.clamp(...))" in message
        assert "your function raised" not in message


def test_the_in_place_hint_names_an_argument_changed_before_use_only_as_a_suspect():
    def culprit_is_local(logprobs, old_logprobs, advantages, epsilon):
        old_logprobs.clamp_(-1e9, 1e9)  # harmless: before any use, values unchanged
        ratio = torch.exp(logprobs - old_logprobs)
        unclipped = ratio * advantages
        ratio.clamp_(1 - epsilon, 1 + epsilon)  # the real culprit: exp saved its output
        return torch.minimum(unclipped, ratio * advantages).mean()

    message = lesson2.check_clipped_objective.run(culprit_is_local).message
    assert "changed a tensor in place after using it" in message, message
    assert "`old_logprobs` in place: if that came after a line that computed with it" in message
    assert "changed its argument `old_logprobs` in place after using it" not in message
