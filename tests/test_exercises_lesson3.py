"""Lesson 3 checkers: reject the stub and the typical wrong answers (with a hint that says
what is wrong), accept correct solutions."""

from __future__ import annotations

import pytest
import torch

from ppo_edu.advantages import bootstrap_values, compute_gae, td_residuals
from ppo_edu.exercises.lesson3 import check_bootstrap_values, check_gae, check_td_residuals


def stub(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your solution")


# --------------------------------------------------------------------------- solutions


def my_bootstrap_values(values, terminated, truncated, final_values, next_values):
    next_v = torch.cat([values[1:], next_values[None]])
    next_v = torch.where(truncated, final_values, next_v)
    return torch.where(terminated, torch.zeros_like(next_v), next_v)


def my_td_residuals(rewards, values, terminated, truncated, final_values, next_values, gamma):
    nxt = my_bootstrap_values(values, terminated, truncated, final_values, next_values)
    return rewards + gamma * nxt - values


def my_gae(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
    deltas = my_td_residuals(rewards, values, terminated, truncated, final_values, next_values,
                             gamma)
    not_done = (~(terminated | truncated)).float()
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_values)
    for t in reversed(range(len(rewards))):
        last = deltas[t] + gamma * lam * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


# --------------------------------------------------------------------------- the harness


def test_stub_falls_back_to_the_reference(capsys):
    for check, reference in ((check_bootstrap_values, bootstrap_values),
                             (check_td_residuals, td_residuals), (check_gae, compute_gae)):
        assert check(stub) is reference
        assert "not implemented yet" in capsys.readouterr().out


def test_solutions_pass_and_are_returned(capsys):
    for check, fn in ((check_bootstrap_values, my_bootstrap_values),
                      (check_td_residuals, my_td_residuals), (check_gae, my_gae)):
        assert check(fn) is fn
        out = capsys.readouterr().out
        assert out.startswith("✅") and out.count("\n") == 1


def test_the_references_pass():
    assert check_bootstrap_values.verify(bootstrap_values) is None
    assert check_td_residuals.verify(td_residuals) is None
    assert check_gae.verify(compute_gae) is None


def test_a_failing_answer_prints_one_line_and_returns_the_reference(capsys):
    assert check_gae(lambda *a, **k: (None, None)) is compute_gae
    out = capsys.readouterr().out
    assert out.startswith("❌") and out.count("\n") == 1


# --------------------------------------------------------------------------- exercise 1


def test_bootstrap_truncation_as_termination_is_named():
    def wrong(values, terminated, truncated, final_values, next_values):
        nxt = torch.cat([values[1:], next_values[None]])
        return torch.where(terminated | truncated, torch.zeros_like(nxt), nxt)

    assert "treats the time limit as a termination" in check_bootstrap_values.verify(wrong)


def test_bootstrap_from_the_next_episode_is_named():
    def wrong(values, terminated, truncated, final_values, next_values):
        nxt = torch.cat([values[1:], next_values[None]])
        return torch.where(terminated, torch.zeros_like(nxt), nxt)

    assert "NEXT episode" in check_bootstrap_values.verify(wrong)


def test_bootstrap_finding_episode_ends_by_a_nonzero_final_value_is_named():
    # V(final obs) can be exactly 0 (a critic whose last layer starts at zero): the flags say
    # where an episode ends, not the value
    def wrong(values, terminated, truncated, final_values, next_values):
        nxt = torch.cat([values[1:], next_values[None]])
        return torch.where(final_values != 0, final_values, nxt) * (~terminated)

    assert "NEXT episode" in check_bootstrap_values.verify(wrong)


def test_bootstrap_after_termination_must_be_zero():
    def wrong(values, terminated, truncated, final_values, next_values):
        nxt = torch.cat([values[1:], next_values[None]])
        return torch.where(terminated | truncated, final_values, nxt)

    assert "terminated step" in check_bootstrap_values.verify(wrong)


def test_bootstrap_forgetting_next_values_is_named():
    def wrong(values, terminated, truncated, final_values, next_values):
        nxt = torch.cat([values[1:], torch.zeros_like(next_values)[None]])
        nxt = torch.where(truncated, final_values, nxt)
        return torch.where(terminated, torch.zeros_like(nxt), nxt)

    assert "last step" in check_bootstrap_values.verify(wrong)


def _bootstrap_last_step_from_next_values(values, terminated, truncated, final_values, next_values):
    """Handles episode ends inside the rollout, but bootstraps every last step from
    next_values, even where the episode was truncated or terminated there."""
    nxt = torch.where(truncated, final_values, torch.cat([values[1:], values[-1:]]))
    nxt = torch.where(terminated, torch.zeros_like(nxt), nxt)
    return torch.cat([nxt[:-1], next_values[None]])


def test_bootstrap_ignoring_an_episode_end_on_the_last_step_is_named():
    hint = check_bootstrap_values.verify(_bootstrap_last_step_from_next_values)
    assert "the rollout's last, you used next_values[i]" in hint


def test_td_and_gae_ignoring_an_episode_end_on_the_last_step_are_rejected():
    def td(rewards, values, terminated, truncated, final_values, next_values, gamma):
        nxt = _bootstrap_last_step_from_next_values(values, terminated, truncated, final_values,
                                                    next_values)
        return rewards + gamma * nxt - values

    def gae(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = td(rewards, values, terminated, truncated, final_values, next_values, gamma)
        not_done = (~(terminated | truncated)).float()
        advantages, last = torch.zeros_like(rewards), torch.zeros_like(next_values)
        for t in reversed(range(len(rewards))):
            last = deltas[t] + gamma * lam * not_done[t] * last
            advantages[t] = last
        return advantages, advantages + values

    # the last step of a rollout can be an episode end too: there next_values is the next episode's
    assert "at truncated step (2, 0)" in check_td_residuals.verify(td)
    assert "last wrong step of env 0 is truncated step (2, 0): expected 3.9100, got 4.9000" in check_gae.verify(gae)


def test_bootstrap_wrong_shape_is_named():
    assert "shape" in check_bootstrap_values.verify(lambda v, *rest: v[:-1])


# --------------------------------------------------------------------------- exercise 2


def test_td_wrong_sign_is_named():
    def wrong(*args, gamma):
        return -my_td_residuals(*args, gamma)

    assert "wrong sign" in check_td_residuals.verify(wrong)


def test_td_missing_gamma_is_named():
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma):
        return my_td_residuals(rewards, values, terminated, truncated, final_values,
                               next_values, 1.0)

    assert "gamma is missing" in check_td_residuals.verify(wrong)


def test_td_ignoring_episode_ends_is_rejected():
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma):
        return rewards + gamma * torch.cat([values[1:], next_values[None]]) - values

    hint = check_td_residuals.verify(wrong)
    assert hint is not None and ("terminated" in hint or "truncated" in hint)


# --------------------------------------------------------------------------- exercise 3


def test_gae_leaking_across_episodes_is_named():
    def leaky(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = td_residuals(rewards, values, terminated, truncated, final_values, next_values,
                              gamma)
        adv, last = torch.zeros_like(deltas), torch.zeros_like(next_values)
        for t in reversed(range(len(deltas))):
            last = deltas[t] + gamma * lam * last
            adv[t] = last
        return adv, adv + values

    assert "leak across episode boundaries at index (1, 0)" in check_gae.verify(leaky)


def test_gae_truncation_as_termination_is_named():
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        return compute_gae(rewards, values, terminated | truncated, torch.zeros_like(truncated),
                           final_values, next_values, gamma=gamma, lam=lam)

    assert "truncation as termination" in check_gae.verify(wrong)


def test_gae_wrong_returns_are_named():
    def wrong(*args, gamma, lam):
        advantages, _ = my_gae(*args, gamma, lam)
        return advantages, advantages

    assert "returns = advantages + values" in check_gae.verify(wrong)


def test_gae_forward_recursion_is_rejected():
    def forward(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = td_residuals(rewards, values, terminated, truncated, final_values, next_values,
                              gamma)
        adv, last = torch.zeros_like(deltas), torch.zeros_like(next_values)
        for t in range(len(deltas)):
            last = deltas[t] + gamma * lam * last
            adv[t] = last
        return adv, adv + values

    assert "backwards" in check_gae.verify(forward)


def test_gae_returning_only_advantages_is_named():
    def wrong(*args, gamma, lam):
        return my_gae(*args, gamma, lam)[0]

    assert "pair (advantages, returns)" in check_gae.verify(wrong)


def test_gae_masking_with_terminated_only_names_the_truncation():
    def terminated_only(rewards, values, terminated, truncated, final_values, next_values, gamma,
                        lam):
        deltas = td_residuals(rewards, values, terminated, truncated, final_values, next_values,
                              gamma)
        adv, last = torch.zeros_like(deltas), torch.zeros_like(next_values)
        for t in reversed(range(len(deltas))):
            last = deltas[t] + gamma * lam * (1.0 - terminated[t].float()) * last
            adv[t] = last
        return adv, adv + values

    hint = check_gae.verify(terminated_only)
    # the hand-made case is truncated at step 3 (terminated at step 1, which this mask handles)
    assert hint is not None and "leak across the truncation at index (3, 0)" in hint
    assert "truncated steps too" in hint and "final_values" in hint
    assert "inside step" not in hint


def test_gae_with_lambda_hard_coded_is_rejected():
    # lam fixed at 0.95 is right on the (gamma=0.99, lam=0.95) cases: only the other
    # (gamma, lam) pairs, lam = 0 first, can reject it
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        return my_gae(rewards, values, terminated, truncated, final_values, next_values, gamma, 0.95)

    hint = check_gae.verify(wrong)
    assert hint is not None and "with lam = 0 GAE must equal the TD residuals" in hint


def test_gae_with_a_done_mask_that_goes_negative_is_rejected():
    # 1 - terminated - truncated is -1 where a step is both (gymnasium allows it): the
    # recursion then flips the sign of A_(t+1). The hand-made cases have such a step only at
    # the rollout's end, where A_(t+1) is 0 anyway: only the random rollouts catch it
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = my_td_residuals(rewards, values, terminated, truncated, final_values,
                                 next_values, gamma)
        not_done = 1.0 - terminated.float() - truncated.float()
        advantages, last = torch.zeros_like(rewards), torch.zeros_like(next_values)
        for t in reversed(range(len(rewards))):
            last = deltas[t] + gamma * lam * not_done[t] * last
            advantages[t] = last
        return advantages, advantages + values

    hint = check_gae.verify(wrong)
    assert hint is not None and "expected" in hint


def _gae_by_recursion(delta_fn, step):
    """A learner's GAE: their deltas, then ``step(t, deltas, not_done, A_(t+1)) -> A_t`` backwards."""
    def gae(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = delta_fn(rewards, values, terminated, truncated, final_values, next_values, gamma)
        not_done = (~(terminated | truncated)).float()
        advantages, running = torch.zeros_like(rewards), torch.zeros_like(next_values)
        for t in reversed(range(len(rewards))):
            running = step(t, deltas, not_done, running, gamma, lam)
            advantages[t] = running
        return advantages, advantages + values
    return gae


def _deltas_without_final_values(rewards, values, terminated, truncated, final_values, next_values,
                                 gamma):
    following = torch.cat([values[1:], next_values[None]], 0)  # the next episode's V after a truncation
    return rewards + gamma * following * (1 - terminated.float()) - values


@pytest.mark.parametrize("name, gae, env, where", [
    ("deltas that bootstrap a truncation from the next row",
     _gae_by_recursion(_deltas_without_final_values,
                       lambda t, d, nd, run, g, lm: d[t] + g * lm * nd[t] * run), 0, "truncated step (3, 0)"),
    ("done_(t+1) instead of done_t",
     _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm:
                       d[t] + g * lm * (nd[t + 1] if t + 1 < len(d) else 1.0) * run), 0, "truncated step (3, 0)"),
    ("delta zeroed at episode ends",
     _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm: (d[t] + g * lm * run) * nd[t]),
     0, "truncated step (3, 0)"),
    ("not_done = 1 - terminated - truncated",
     lambda r, v, te, tr, fv, nv, gamma, lam: _gae_by_recursion(
         td_residuals, lambda t, d, nd, run, g, lm: d[t] + g * lm * (1 - te[t].float() - tr[t].float()) * run)(
         r, v, te, tr, fv, nv, gamma, lam), 1, "terminated-and-truncated step (4, 1)"),
])
def test_gae_hint_points_at_the_step_that_is_wrong_not_the_earliest_it_spoils(name, gae, env, where):
    """An error at step t flows back into every earlier step, so the first wrong index is an
    innocent step whose own update matches the formula: the hint names the last wrong one."""
    hint = check_gae.verify(gae)
    assert hint is not None and f"last wrong step of env {env} is {where}" in hint, (name, hint)
    assert "inside step" not in hint


def test_gae_with_gamma_hard_coded_in_the_recursion_asks_whether_it_is():
    def wrong(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        return _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm: d[t] + 0.99 * lm * nd[t] * run)(
            rewards, values, terminated, truncated, final_values, next_values, gamma, lam)

    hint = check_gae.verify(wrong)
    assert hint is not None and "right for gamma=0.99, lam=0.95: is gamma or lam hard-coded" in hint


def test_bootstrap_with_truncation_applied_after_termination_is_told_termination_wins():
    def truncation_last(values, terminated, truncated, final_values, next_values):
        following = torch.cat([values[1:], next_values[None]], 0)
        following = torch.where(terminated, torch.zeros_like(following), following)
        return torch.where(truncated, final_values, following)  # overrides the termination at (4, 1)

    hint = check_bootstrap_values.verify(truncation_last)
    assert hint is not None and "at terminated step" in hint
    assert "also truncated: termination wins, so apply it last" in hint


@pytest.mark.parametrize("factor, named", [
    (lambda g, lm: g, "multiplies A_(t+1) by gamma only: lam is missing"),
    (lambda g, lm: lm, "multiplies A_(t+1) by lam only: gamma is missing"),
    (lambda g, lm: 1.0, "adds A_(t+1) with no factor: gamma and lam are both missing"),
])
def test_gae_with_a_wrong_factor_of_the_next_advantage_is_told_which(factor, named):
    """gamma or lam left out of gamma * lam * A_(t+1) was blamed on the step's own delta_t (the
    last step of an episode is right, the one before it is the last wrong one)."""
    wrong = _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm: d[t] + factor(g, lm) * nd[t] * run)
    hint = check_gae.verify(wrong)
    assert hint is not None and named in hint and "A_t = delta_t + gamma * lam * A_(t+1)" in hint
    assert "own delta_t" not in hint
    assert check_gae.verify(my_gae) is None


def test_gae_with_another_wrong_factor_is_pointed_at_the_term_too():
    # gamma twice: no named mistake, so the per-step hint, which must not blame delta_t alone
    wrong = _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm: d[t] + g * g * lm * nd[t] * run)
    hint = check_gae.verify(wrong)
    assert hint is not None and "own delta_t, in the gamma * lam * A_(t+1) term, or in whether done_t" in hint


def test_bootstrap_finding_truncations_by_a_nonzero_final_value_is_told_to_use_the_flag():
    # the hand-made case truncated with final_values[t] = 0: "you used values[t + 1] ... use
    # final_values[t]" told this learner to do what they already do
    def by_value(values, terminated, truncated, final_values, next_values):
        following = torch.cat([values[1:], next_values[None]])
        following = torch.where(final_values != 0, final_values, following)
        return torch.where(terminated, torch.zeros_like(following), following)

    hint = check_bootstrap_values.verify(by_value)
    assert hint is not None and "at truncated step (1, 0) final_values[t] is exactly 0" in hint, hint
    assert "Select truncated steps by the `truncated` flag, not by final_values != 0" in hint


def _bool_buffer_bootstrap(values, terminated, truncated, final_values, next_values):
    out = torch.zeros_like(terminated)  # bool: every value stored becomes True or False
    out[:] = my_bootstrap_values(values, terminated, truncated, final_values, next_values)
    return out


def _buffer_gae(dtype):
    def gae(rewards, values, terminated, truncated, final_values, next_values, gamma, lam):
        deltas = td_residuals(rewards, values, terminated, truncated, final_values, next_values, gamma)
        advantages = torch.zeros_like(terminated, dtype=dtype)  # the recursion itself is right
        last = torch.zeros_like(next_values)
        for t in reversed(range(len(rewards))):
            last = deltas[t] + gamma * lam * (~(terminated[t] | truncated[t])).float() * last
            advantages[t] = last
        return advantages, advantages + values
    return gae


def _bool_buffer_td(rewards, values, terminated, truncated, final_values, next_values, gamma):
    out = torch.zeros_like(terminated)
    out[:] = my_td_residuals(rewards, values, terminated, truncated, final_values, next_values, gamma)
    return out


@pytest.mark.parametrize("check, wrong, said", [
    (check_bootstrap_values, _bool_buffer_bootstrap, "your result is a bool tensor (torch.bool)"),
    (check_td_residuals, _bool_buffer_td, "your result is a bool tensor (torch.bool)"),
    (check_gae, _buffer_gae(torch.bool), "advantages: your result is a bool tensor (torch.bool)"),
    (check_gae, _buffer_gae(torch.long), "advantages: your result is an integer tensor (torch.int64)"),
])
def test_a_result_buffer_of_a_flag_dtype_is_named_not_the_recursion(check, wrong, said):
    hint = check.verify(wrong)
    assert hint is not None and said in hint and "it must be floating point" in hint, hint
    assert "torch.zeros_like(values)" in hint or "torch.zeros_like(rewards)" in hint
    assert "last wrong step" not in hint and "inside an episode" not in hint


def test_gae_with_the_done_mask_one_step_late_is_named():
    # CleanRL's nextnonterminal = 1 - dones[t + 1], copied onto flags that mark step t's own end
    wrong = _gae_by_recursion(td_residuals, lambda t, d, nd, run, g, lm:
                              d[t] + g * lm * (nd[t + 1] if t + 1 < len(d) else 1.0) * run)
    hint = check_gae.verify(wrong)
    assert hint is not None and "your done mask is one step off" in hint, hint
    assert "1 - d_(t + 1)" in hint and "d_t = terminated[t] or truncated[t]" in hint
    assert "CleanRL" in hint and "own delta_t" not in hint


def test_td_truncation_as_termination_and_as_nothing_are_named():
    def as_termination(rewards, values, terminated, truncated, final_values, next_values, gamma):
        return rewards + gamma * bootstrap_values(values, terminated | truncated, torch.zeros_like(truncated),
                                                  final_values, next_values) - values

    def ignored(rewards, values, terminated, truncated, final_values, next_values, gamma):
        return rewards + gamma * bootstrap_values(values, terminated, torch.zeros_like(truncated),
                                                  final_values, next_values) - values

    hint = check_td_residuals.verify(as_termination)
    assert hint is not None and "at truncated step (3, 0)" in hint, hint
    assert "treats the time limit as a termination. The state still has a future: use final_values[t]" in hint
    hint = check_td_residuals.verify(ignored)
    assert hint is not None and "the value of the NEXT episode's first state" in hint, hint
