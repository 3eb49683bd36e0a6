"""Every checker accepts correct answers written otherwise than the notebook's solution.

A checker that rejects a right answer stops a learner who got it right, and a hint for a
mistake they did not make is worse than none. The other test files prove that the checkers
catch wrong answers; this one holds them to passing the ways learners, and the codebases they
have read, write the same functions: the maximum of negated terms instead of the minimum, a
`where` on the sign of the advantage, a Python loop per row, population instead of sample
variances, boolean or float masks, a loss summed and divided instead of averaged, numpy
instead of torch. (Lesson 4's value loss, lesson 5's `-logsigmoid` and lesson 6's KL term for
the loss have such tests in their own files.)
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppo_edu.exercises.lesson1 import check_cpi, check_ratio
from ppo_edu.exercises.lesson2 import check_clip_fraction, check_clipped_objective
from ppo_edu.exercises.lesson3 import check_bootstrap_values, check_gae, check_td_residuals
from ppo_edu.exercises.lesson4 import check_explained_variance
from ppo_edu.exercises.lesson5 import check_bradley_terry_loss, check_last_token_scores
from ppo_edu.exercises.lesson6 import (
    check_kl_penalty,
    check_response_mask,
    check_token_gae,
    check_value_loss,
)
from ppo_edu.objectives import masked_mean

# ------------------------------------------------------------------------------ lessons 1-2


def ratio_of_differences(logprobs, old_logprobs):
    return (logprobs - old_logprobs).exp()


def ratio_old_detached(logprobs, old_logprobs):  # the gradient asked for is the one in logprobs
    return torch.exp(logprobs - old_logprobs.detach())


def ratio_in_float64(logprobs, old_logprobs):
    return torch.exp(logprobs.double() - old_logprobs.double()).to(logprobs.dtype)


def cpi_with_torch_mean(logprobs, old_logprobs, advantages):
    return torch.mean(torch.exp(logprobs - old_logprobs) * advantages)


def cpi_summed_and_divided(logprobs, old_logprobs, advantages):
    return (torch.exp(logprobs - old_logprobs) * advantages).sum() / advantages.numel()


def cpi_advantages_detached(logprobs, old_logprobs, advantages):
    return (torch.exp(logprobs - old_logprobs) * advantages.detach()).mean()


def clip_as_max_of_negated_losses(logprobs, old_logprobs, advantages, epsilon):
    ratio = torch.exp(logprobs - old_logprobs)
    losses = -advantages * ratio, -advantages * torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    return -torch.max(*losses).mean()


def clip_bound_by_the_sign_of_the_advantage(logprobs, old_logprobs, advantages, epsilon):
    ratio = torch.exp(logprobs - old_logprobs)
    bound = torch.where(advantages > 0, (1 + epsilon) * advantages, (1 - epsilon) * advantages)
    return torch.min(ratio * advantages, bound).mean()


def clip_piecewise_in_the_ratio(logprobs, old_logprobs, advantages, epsilon):
    ratio = torch.exp(logprobs - old_logprobs)
    upper, lower = torch.full_like(ratio, 1 + epsilon), torch.full_like(ratio, 1 - epsilon)
    terms = torch.where(advantages >= 0, torch.minimum(ratio, upper) * advantages,
                        torch.maximum(ratio, lower) * advantages)
    return terms.mean()


def clip_fraction_two_comparisons(logprobs, old_logprobs, epsilon):
    ratio = torch.exp(logprobs - old_logprobs)
    return ((ratio < 1 - epsilon) | (ratio > 1 + epsilon)).float().mean()


def clip_fraction_counted_and_divided(logprobs, old_logprobs, epsilon):
    return (torch.abs(torch.exp(logprobs - old_logprobs) - 1) > epsilon).sum() / logprobs.numel()


def clip_fraction_in_float64(logprobs, old_logprobs, epsilon):
    return (torch.abs(torch.exp(logprobs - old_logprobs) - 1) > epsilon).double().mean()


# -------------------------------------------------------------------------------- lesson 3


def bootstrap_step_by_step(values, terminated, truncated, final_values, next_values):
    out = torch.empty_like(values)
    for t in range(values.shape[0]):
        following = values[t + 1] if t + 1 < values.shape[0] else next_values
        following = torch.where(truncated[t], final_values[t], following)
        out[t] = torch.where(terminated[t], torch.zeros_like(following), following)
    return out


def bootstrap_times_not_terminated(values, terminated, truncated, final_values, next_values):
    following = torch.where(truncated, final_values, torch.cat([values[1:], next_values[None]]))
    return following * (~terminated).to(values.dtype)


def td_residuals_rewards_first(rewards, values, terminated, truncated, final_values, next_values,
                               gamma):
    following = bootstrap_times_not_terminated(values, terminated, truncated, final_values,
                                               next_values)
    return rewards - values + gamma * following


def gae_with_a_running_last_advantage(rewards, values, terminated, truncated, final_values,
                                      next_values, gamma, lam):
    deltas = td_residuals_rewards_first(rewards, values, terminated, truncated, final_values,
                                        next_values, gamma)
    advantages, last = torch.zeros_like(rewards), 0.0
    for t in reversed(range(rewards.shape[0])):
        continues = 1.0 - (terminated[t] | truncated[t]).float()
        advantages[t] = last = deltas[t] + gamma * lam * continues * last
    return advantages, advantages + values


def gae_stacked_from_a_list(rewards, values, terminated, truncated, final_values, next_values,
                            gamma, lam):
    deltas = td_residuals_rewards_first(rewards, values, terminated, truncated, final_values,
                                        next_values, gamma)
    done, running, backwards = terminated | truncated, torch.zeros_like(next_values), []
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * running * (~done[t])
        backwards.append(running)
    advantages = torch.stack(backwards[::-1])
    return advantages, advantages + values


# ------------------------------------------------------------------------------ lessons 4-5


def explained_variance_in_numpy(predictions, targets):  # np.var: the population variance
    p, t = predictions.detach().cpu().numpy(), targets.detach().cpu().numpy()
    return float("nan") if np.var(t) == 0 else 1 - np.var(t - p) / np.var(t)


def explained_variance_population_variances(predictions, targets):
    var = targets.var(unbiased=False)
    if var == 0:
        return torch.tensor(float("nan"))
    return 1 - (targets - predictions).var(unbiased=False) / var


def explained_variance_flattened_item(predictions, targets):
    var = torch.var(targets.flatten())
    if var.item() == 0:
        return float("nan")
    return (1 - torch.var((targets - predictions).flatten()) / var).item()


def bradley_terry_as_binary_cross_entropy(r_chosen, r_rejected):
    return F.binary_cross_entropy_with_logits(r_chosen - r_rejected, torch.ones_like(r_chosen))


def last_token_at_the_cumsum_maximum(token_scores, attention_mask):
    # argmax returns the first maximum: the last real token, with right or left padding
    return token_scores.gather(1, attention_mask.cumsum(1).argmax(1, keepdim=True)).squeeze(1)


def last_token_from_the_flipped_mask(token_scores, attention_mask):
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).argmax(1)
    return token_scores[torch.arange(token_scores.shape[0]), last]


def last_token_row_by_row(token_scores, attention_mask):
    return torch.stack([row[mask.nonzero().max()] for row, mask in zip(token_scores, attention_mask)])


# -------------------------------------------------------------------------------- lesson 6


def response_mask_as_booleans(response_ids, eos_token_id):
    is_eos = (response_ids == eos_token_id).long()
    return (is_eos.cumsum(1) - is_eos) == 0


def response_mask_row_by_row(response_ids, eos_token_id):
    mask = torch.ones_like(response_ids)
    for row, ids in zip(mask, response_ids):
        eos_at = (ids == eos_token_id).nonzero()
        if len(eos_at):
            row[int(eos_at[0]) + 1:] = 0
    return mask


def response_mask_from_a_shifted_count(response_ids, eos_token_id):
    seen = (response_ids == eos_token_id).cumsum(1)
    seen_before = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], 1)
    return (seen_before == 0).long()


def response_mask_as_floats(response_ids, eos_token_id):
    return response_mask_from_a_shifted_count(response_ids, eos_token_id).float()


def kl_penalty_with_exp_minus_one(logprobs, ref_logprobs, mask, estimator="k1"):
    log_ratio = torch.where(mask.bool(), ref_logprobs - logprobs, 0.0)
    kl = -log_ratio if estimator == "k1" else torch.exp(log_ratio) - 1 - log_ratio
    return kl * mask


def kl_penalty_masked_after(logprobs, ref_logprobs, mask, estimator="k1"):
    log_ratio = ref_logprobs - logprobs
    kl = -log_ratio if estimator == "k1" else (log_ratio.exp() - 1) - log_ratio
    return torch.where(mask.bool(), kl, torch.zeros_like(kl))


def kl_penalty_from_the_ratio(logprobs, ref_logprobs, mask, estimator="k1"):
    padding = ~mask.bool()
    if estimator == "k1":
        return (logprobs - ref_logprobs).masked_fill(padding, 0.0)
    rho = torch.exp((ref_logprobs - logprobs).masked_fill(padding, 0.0))
    return ((rho - 1) - torch.log(rho)).masked_fill(padding, 0.0)


def token_gae_with_a_running_last_advantage(rewards, values, mask, gamma=1.0, lam=0.95):
    real = mask.bool()
    rewards = torch.where(real, rewards, 0.0)
    values = torch.where(real, values, 0.0)
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        following = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        last = (rewards[:, t] + gamma * following - values[:, t] + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def token_gae_row_by_row(rewards, values, mask, gamma=1.0, lam=0.95):
    advantages, returns = torch.zeros_like(rewards), torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        length, running = int(mask[b].sum()), 0.0
        for t in reversed(range(length)):
            following = values[b, t + 1] if t + 1 < length else 0.0
            running = rewards[b, t] + gamma * following - values[b, t] + gamma * lam * running
            advantages[b, t], returns[b, t] = running, running + values[b, t]
    return advantages, returns


def value_loss_summed_and_divided(values, old_values, returns, mask, clip_range=0.2):
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    errors = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * torch.where(mask.bool(), errors, 0.0).sum() / mask.sum()


def value_loss_on_the_real_tokens_only(values, old_values, returns, mask, clip_range=0.2):
    real = mask.bool()
    v, old, target = values[real], old_values[real], returns[real]
    clipped = old + torch.clamp(v - old, -clip_range, clip_range)
    return 0.5 * torch.maximum((v - target) ** 2, (clipped - target) ** 2).mean()


def value_loss_with_its_clip_fraction(values, old_values, returns, mask, clip_range=0.2):
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    errors = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    fraction = masked_mean(((values - old_values).abs() > clip_range).float(), mask)
    return 0.5 * masked_mean(errors, mask), fraction


ANSWERS = [
    (check_ratio, ratio_of_differences),
    (check_ratio, ratio_old_detached),
    (check_ratio, ratio_in_float64),
    (check_cpi, cpi_with_torch_mean),
    (check_cpi, cpi_summed_and_divided),
    (check_cpi, cpi_advantages_detached),
    (check_clipped_objective, clip_as_max_of_negated_losses),
    (check_clipped_objective, clip_bound_by_the_sign_of_the_advantage),
    (check_clipped_objective, clip_piecewise_in_the_ratio),
    (check_clip_fraction, clip_fraction_two_comparisons),
    (check_clip_fraction, clip_fraction_counted_and_divided),
    (check_clip_fraction, clip_fraction_in_float64),
    (check_bootstrap_values, bootstrap_step_by_step),
    (check_bootstrap_values, bootstrap_times_not_terminated),
    (check_td_residuals, td_residuals_rewards_first),
    (check_gae, gae_with_a_running_last_advantage),
    (check_gae, gae_stacked_from_a_list),
    (check_explained_variance, explained_variance_in_numpy),
    (check_explained_variance, explained_variance_population_variances),
    (check_explained_variance, explained_variance_flattened_item),
    (check_bradley_terry_loss, bradley_terry_as_binary_cross_entropy),
    (check_last_token_scores, last_token_at_the_cumsum_maximum),
    (check_last_token_scores, last_token_from_the_flipped_mask),
    (check_last_token_scores, last_token_row_by_row),
    (check_response_mask, response_mask_as_booleans),
    (check_response_mask, response_mask_row_by_row),
    (check_response_mask, response_mask_from_a_shifted_count),
    (check_response_mask, response_mask_as_floats),
    (check_kl_penalty, kl_penalty_with_exp_minus_one),
    (check_kl_penalty, kl_penalty_masked_after),
    (check_kl_penalty, kl_penalty_from_the_ratio),
    (check_token_gae, token_gae_with_a_running_last_advantage),
    (check_token_gae, token_gae_row_by_row),
    (check_value_loss, value_loss_summed_and_divided),
    (check_value_loss, value_loss_on_the_real_tokens_only),
    (check_value_loss, value_loss_with_its_clip_fraction),
]


@pytest.mark.parametrize("check, answer", ANSWERS, ids=[answer.__name__ for _, answer in ANSWERS])
def test_a_correct_answer_written_another_way_passes(check, answer, capsys):
    result = check.run(answer)
    assert result.passed, result.message
    assert result.fn is answer  # the rest of the notebook runs on the learner's function
    assert result.message.startswith("✅")
