"""The lesson 1-2 checkers accept the reference, reject the stub and the typical mistakes."""

import math

import numpy as np
import pytest
import torch

from ppo_edu.exercises.lesson1 import check_cpi, check_ratio
from ppo_edu.exercises.lesson2 import check_clip_fraction, check_clipped_objective


def stub(*args):
    raise NotImplementedError("exercise: replace this line with your solution")


def clamp(r, e):
    return torch.clamp(r, 1 - e, 1 + e)


@pytest.mark.parametrize("check", [check_ratio, check_cpi, check_clipped_objective, check_clip_fraction])
def test_checker_accepts_the_reference_and_returns_it(check, capsys):
    result = check.run(check.reference)
    assert result.passed and result.fn is check.reference
    assert check(check.reference) is check.reference
    assert capsys.readouterr().out.startswith("✅")


@pytest.mark.parametrize("check", [check_ratio, check_cpi, check_clipped_objective, check_clip_fraction])
def test_stub_falls_back_to_the_reference_with_a_notice(check, capsys):
    fn = check(stub)
    out = capsys.readouterr().out
    assert fn is check.reference
    assert "not implemented yet" in out and "reference" in out
    assert out.count("\n") == 1  # one clear line


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda new, old: torch.exp(new) / torch.exp(old), "underflows"),
        (lambda new, old: torch.exp(old - new), "pi_theta_old / pi_theta"),
        (lambda new, old: new - old, "log-ratio"),
        (lambda new, old: torch.exp(new - old).detach(), "no gradient"),
        (lambda new, old: torch.exp(new - old).sum(), "shape"),
    ],
)
def test_ratio_checker_names_the_mistake(wrong, hint):
    result = check_ratio.run(wrong)
    assert not result.passed and hint in result.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda new, old, adv: (torch.exp(new - old) * adv).sum(), "summed"),
        (lambda new, old, adv: (new * adv).mean(), "same gradient at θ_old"),
        (lambda new, old, adv: adv.mean(), "does not depend on θ"),
        (lambda new, old, adv: ((new - old) * adv).mean(), "used the log-ratio"),
        (lambda new, old, adv: (torch.exp(old - new) * adv).mean(), "upside down"),
        (lambda new, old, adv: torch.exp(new - old) * adv, "one number"),
        (lambda new, old, adv: ((torch.exp(new - old) - 1) * adv).mean() * 2, "expected"),
        (lambda new, old, adv: (torch.exp(new - old) * (adv - adv.mean()) / (adv.std() + 1e-8)).mean(),
         "normalised the advantages inside L^CPI"),
    ],
)
def test_cpi_checker_names_the_mistake(wrong, hint):
    result = check_cpi.run(wrong)
    assert not result.passed and hint in result.message


def ratio(new, old):
    return torch.exp(new - old)


def test_a_finished_function_calling_an_unfinished_one_is_told_which(capsys):
    def my_probability_ratio(logprobs, old_logprobs):
        raise NotImplementedError("exercise: replace this line with your solution")

    def my_cpi_surrogate(logprobs, old_logprobs, advantages):  # done, but calls the stub directly
        return (my_probability_ratio(logprobs, old_logprobs) * advantages).mean()

    def bare_placeholder(logprobs, old_logprobs, advantages):
        raise NotImplementedError

    def missing_kernel(logprobs, old_logprobs, advantages):  # what torch raises on some devices
        raise NotImplementedError("The operator 'aten::exp' is not currently implemented for the MPS device")

    message = check_cpi.run(my_cpi_surrogate).message
    assert "not implemented yet" in message and "calls `my_probability_ratio`" in message
    assert "_fn" in message and not message.startswith("⏳")
    assert check_cpi.run(bare_placeholder).message.startswith("⏳ CPI surrogate L^CPI: not implemented yet")
    message = check_cpi.run(missing_kernel).message
    assert "raised NotImplementedError: The operator" in message and "not implemented yet" not in message

    @torch.no_grad()
    def decorated_stub(logprobs, old_logprobs, advantages):  # the stub itself, behind a decorator
        raise NotImplementedError("exercise: replace this line with your solution")

    def bare_helper(logprobs):
        raise NotImplementedError

    def calls_a_bare_helper(logprobs, old_logprobs, advantages):
        return bare_helper(logprobs)

    assert check_cpi.run(decorated_stub).message.startswith("⏳ CPI surrogate L^CPI: not implemented yet")
    message = check_cpi.run(calls_a_bare_helper).message
    assert "raised NotImplementedError in `bare_helper`" in message and "_fn" not in message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda n, o, a, e: (ratio(n, o) * a).mean(), "the clip never acts"),
        (lambda n, o, a, e: (clamp(ratio(n, o), e) * a).mean(), "clip(r)·A alone"),
        (lambda n, o, a, e: torch.maximum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean(), "you took the max"),
        # min(r, clip(r))·A: right for A > 0 only, a max for A < 0
        (lambda n, o, a, e: (torch.min(ratio(n, o), clamp(ratio(n, o), e)) * a).mean(),
         "A taken out of the min"),
        # r clipped at 1+ε only, no min: the same terms, so the same hint names it
        (lambda n, o, a, e: (ratio(n, o).clamp(max=1 + e) * a).mean(), "r clipped at 1+ε only"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o) * a, e)).mean(), "not the product"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, ratio(n, o) * a.clamp(-e, e)).mean(),
         "you clipped the advantages"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).sum() * 1.0
         if n.numel() > 1 else torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean(), "summed"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), 0.2) * a).mean(), "hard-coded"),
        (lambda n, o, a, e: torch.minimum((ratio(n, o) * a).mean(), (clamp(ratio(n, o), e) * a).mean()),
         "not the min of the two means"),
        (lambda n, o, a, e: torch.min(torch.stack([ratio(n, o) * a, clamp(ratio(n, o), e) * a])),
         "nor one min over the whole batch"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a), "one number"),
        (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).detach().mean(),
         "no gradient"),
    ],
)
def test_clipped_objective_checker_names_the_mistake(wrong, hint):
    result = check_clipped_objective.run(wrong)
    assert not result.passed and hint in result.message, result.message
    if hint != "hard-coded":  # blaming ε for another mistake sends the learner the wrong way
        assert "hard-coded" not in result.message, result.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda n, o, e: ((ratio(n, o) - 1) > e).float().mean(), "both sides"),
        (lambda n, o, e: ((ratio(n, o) - 1).abs() > e).float().sum(), "a count"),
        (lambda n, o, e: ((ratio(n, o) - 1).abs() > 0.2).float().mean(), "hard-coded"),
        (lambda n, o, e: ((n - o).abs() > e).float().mean(), "not the log-ratio"),
        (lambda n, o, e: ((ratio(n, o) - 1).abs() > e).float().mean() * 0.9, "should give"),
        (lambda n, o, e: ((ratio(o, n) - 1).abs() > e).float().mean(), "upside down"),
        (lambda n, o, e: ((ratio(n, o) - 1).abs() > e).float().mean().numpy(), "you returned a numpy ndarray"),
        # numpy's float64 subclasses Python's float: still named as numpy, with no '.item()' blamed
        (lambda n, o, e: np.mean(np.abs(np.exp((n - o).numpy().astype(np.float64)) - 1) > e),
         "you returned a numpy float64"),
        # |log r| > log(1 + eps) counts as many of the fixed ratios as an upside-down ratio does
        (lambda n, o, e: ((n - o).abs() > math.log(1 + e)).float().mean(), "should give"),
    ],
)
def test_clip_fraction_checker_names_the_mistake(wrong, hint):
    result = check_clip_fraction.run(wrong)
    assert not result.passed and hint in result.message, result.message


def test_a_crashing_solution_reports_the_exception():
    def crashes(new, old):
        raise RuntimeError("oops")

    result = check_ratio.run(crashes)
    assert not result.passed and "RuntimeError: oops" in result.message


def numpy_ratio(new, old):
    """The numpy round-trip, with requires_grad set again: values right, no path to `new`."""
    return torch.tensor((new.detach().numpy() - old.numpy()), requires_grad=True).exp()


@pytest.mark.parametrize("wrong", [
    lambda new, old: torch.exp(new - old).detach().requires_grad_(),
    numpy_ratio,
])
def test_ratio_cut_from_the_graph_is_caught(wrong):
    """requires_grad is True on both, so only following the gradient back to logprobs tells."""
    result = check_ratio.run(wrong)
    assert not result.passed and "no gradient back to logprobs" in result.message, result.message
    assert "raised" not in result.message  # the checker's own autograd call must not crash


@pytest.mark.parametrize("check, wrong", [
    (check_cpi, lambda n, o, a: (ratio(n, o) * a).mean().detach().requires_grad_()),
    (check_clipped_objective,
     lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean().detach().requires_grad_()),
])
def test_objective_cut_from_the_graph_is_caught(check, wrong):
    result = check.run(wrong)
    assert not result.passed and "no gradient back to logprobs" in result.message, result.message


@pytest.mark.parametrize("check, wrong", [
    (check_cpi, lambda n, o, a: (ratio(n, o) * a).mean().item()),
    (check_clipped_objective, lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean().item()),
])
def test_objective_returned_as_a_float_is_told_to_return_a_tensor(check, wrong):
    result = check.run(wrong)
    assert not result.passed and "as a tensor" in result.message, result.message


@pytest.mark.parametrize("check, wrong", [
    (check_cpi, lambda n, o, a: -(ratio(n, o) * a).mean()),
    (check_clipped_objective, lambda n, o, a, e: -torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean()),
])
def test_loss_instead_of_objective_is_caught(check, wrong):
    result = check.run(wrong)
    assert not result.passed and "a loss to minimise" in result.message, result.message


def test_clip_at_one_plus_epsilon_only_names_both_sides():
    """An upper-only clip gives the same terms as clip(r)·|A|: the hint must name both."""
    wrong = lambda n, o, a, e: torch.minimum(ratio(n, o) * a, torch.clamp(ratio(n, o), max=1 + e) * a).mean()
    result = check_clipped_objective.run(wrong)
    assert not result.passed and "both sides" in result.message and "if you used |A|" in result.message


def test_clip_fraction_inside_the_range_is_caught():
    result = check_clip_fraction.run(lambda n, o, e: ((ratio(n, o) - 1).abs() <= e).float().mean())
    assert not result.passed and "inside [1−ε, 1+ε]" in result.message, result.message


def test_clip_fraction_as_a_python_float_is_told_to_return_a_tensor():
    result = check_clip_fraction.run(lambda n, o, e: ((ratio(n, o) - 1).abs() > e).float().mean().item())
    assert not result.passed and "0-dimensional tensor" in result.message and ".item()" in result.message


def test_a_dual_clip_is_not_taken_for_l_clip():
    # Ye et al.'s dual clip, max(L, 3A) for A < 0, is another objective: it differs from
    # L^CLIP only where A < 0 and r > 3, a case the checker needs to hold
    def dual(n, o, a, e):
        r = ratio(n, o)
        terms = torch.minimum(r * a, torch.clamp(r, 1 - e, 1 + e) * a)
        return torch.where(a < 0, torch.maximum(terms, 3 * a), terms).mean()

    result = check_clipped_objective.run(dual)
    assert not result.passed and "r = 4.0" in result.message, result.message


def test_ratio_with_the_right_values_but_the_wrong_gradient_is_caught():
    # a straight-through ratio: the values of exp(new - old), the gradient 1 instead of r_t.
    # Only the gradient check tells it from the real ratio
    wrong = lambda new, old: torch.exp(new - old).detach() + (new - new.detach())
    result = check_ratio.run(wrong)
    assert not result.passed and "wrong gradient" in result.message, result.message
    assert result.fn is check_ratio.reference


def test_ratio_that_only_works_on_one_dimension_is_caught():
    # flattening is invisible on a (T,) batch: the checker must also call it on a 2-d one
    result = check_ratio.run(lambda new, old: torch.exp(new - old).reshape(-1))
    assert not result.passed and "shape (3, 4)" in result.message, result.message


def test_cpi_with_the_value_of_l_cpi_but_the_gradient_of_log_pi_is_caught():
    # the value of Ê[r A] with the gradient of Ê[log pi A] (A/n instead of r A/n): the two
    # gradients agree only at θ_old, so only a gradient check at r != 1 tells them apart
    def wrong(new, old, adv):
        value = (ratio(new, old) * adv).mean().detach()
        surrogate = (new * adv).mean()
        return value + (surrogate - surrogate.detach())

    result = check_cpi.run(wrong)
    assert not result.passed and "its gradient is wrong" in result.message, result.message


def test_clipped_objective_with_the_right_values_but_an_unclipped_gradient_is_caught():
    # the value of L^CLIP, the gradient of L^CPI everywhere (a straight-through): clipped
    # samples keep pushing. Only the per-sample gradient check catches it
    def wrong(n, o, a, e):
        r = ratio(n, o)
        value = torch.minimum(r * a, clamp(r, e) * a).mean()
        cpi = (r * a).mean()
        return value.detach() + (cpi - cpi.detach())

    result = check_clipped_objective.run(wrong)
    assert not result.passed and "the gradient should be" in result.message, result.message


def test_clipped_objective_that_reads_one_sample_of_the_batch_is_caught():
    # the first sample's term instead of the mean: on the single-sample cases the two are the
    # same, so only the batch of 64 can reject it (with no named mistake: the plain numbers)
    wrong = lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a)[0]
    result = check_clipped_objective.run(wrong)
    assert not result.passed and "on a batch of 64 expected" in result.message, result.message
    assert result.fn is check_clipped_objective.reference


def test_something_that_is_not_a_function_is_named_and_replaced_by_the_reference():
    # passing the result of a call (or a forgotten return, None) instead of the function
    result = check_ratio.run(None)
    assert not result.passed and "expected a function, got NoneType" in result.message
    assert result.fn is check_ratio.reference


def test_a_clipped_term_cut_from_the_graph_is_told_why_the_gradient_is_halved():
    """Inside the clip range the two terms of the min are equal and torch.minimum splits the
    gradient between them: a detached clipped term halves it, which the hint explains."""
    def detached_clip(logprobs, old_logprobs, advantages, epsilon=0.2):
        r = torch.exp(logprobs - old_logprobs)
        return torch.minimum(r * advantages, torch.clamp(r, 1 - epsilon, 1 + epsilon).detach() * advantages).mean()

    result = check_clipped_objective.run(detached_clip)
    assert not result.passed and "half: inside the range the two terms tie" in result.message


@pytest.mark.parametrize("check, wrong", [
    (check_cpi, lambda n, o, a: (ratio(n, o) * a).mean(dim=0, keepdim=True)),
    (check_clipped_objective,
     lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean().reshape(1)),
    (check_clip_fraction, lambda n, o, e: ((ratio(n, o) - 1).abs() > e).float().mean(dim=0, keepdim=True)),
])
def test_a_scalar_of_shape_one_is_refused_and_its_shape_named(check, wrong):
    """The exercises ask for a 0-dimensional tensor: shape (1,) holds the right number but is not it."""
    result = check.run(wrong)
    assert not result.passed and result.fn is check.reference, result.message
    assert "0-dimensional tensor" in result.message and "shape (1,)" in result.message, result.message


def test_l_clip_without_the_mean_is_asked_about_the_mean():
    # on the single-sample cases the terms alone have shape (1,): the hint names the missing mean
    wrong = lambda n, o, a, e: torch.minimum(ratio(n, o) * a, clamp(ratio(n, o), e) * a)
    message = check_clipped_objective.run(wrong).message
    assert "shape (1,)" in message and "leave out the mean" in message, message


def test_a_taken_out_of_the_min_is_told_to_keep_it_inside():
    hint = check_clipped_objective.verify(
        lambda n, o, a, e: (torch.min(ratio(n, o), clamp(ratio(n, o), e)) * a).mean())
    assert "only for A > 0 (for A < 0 it is the max): clip r on both sides and keep A inside both terms of the min" in hint
    assert check_clipped_objective.verify(
        lambda n, o, a, e: torch.min(ratio(n, o) * a, clamp(ratio(n, o), e) * a).mean()) is None


def test_cpi_as_a_quotient_of_exponentials_is_told_it_underflows():
    # right on every ordinary batch: only log-probabilities of rare actions (-800) show that
    # exp() of each underflows to 0 and 0/0 = nan, as the ratio's check already tests
    result = check_cpi.run(lambda n, o, a: (torch.exp(n) / torch.exp(o) * a).mean())
    assert not result.passed and result.fn is check_cpi.reference
    assert "logprobs -800 vs -801" in result.message and "got nan" in result.message, result.message
    assert "underflows to 0, so divide in log space" in result.message, result.message
    assert check_cpi.verify(lambda n, o, a: (torch.exp(n - o) * a).mean()) is None


def _terms(r, a, e):
    return torch.minimum(r * a, clamp(r, e) * a)


def _l_clip(r, a, e):
    return _terms(r, a, e).mean()


def test_upside_down_ratio_in_l_clip_is_named_before_any_gradient():
    # right in value at r = 1 alone, where its gradient is -A: the wrong values elsewhere name it
    result = check_clipped_objective.run(lambda n, o, a, e: _l_clip(ratio(o, n), a, e))
    assert not result.passed and "your ratio is upside down" in result.message, result.message
    assert "gradient" not in result.message, result.message


def test_l_clip_gradient_of_the_opposite_sign_is_told_so():
    def flipped(n, o, a, e):  # the values of L^CLIP, the gradient of -L^CLIP
        objective = _l_clip(ratio(n, o), a, e)
        return 2 * objective.detach() - objective

    result = check_clipped_objective.run(flipped)
    assert not result.passed and "the same size with the sign flipped" in result.message, result.message


def test_detached_unclipped_term_outside_the_range_is_not_called_inside():
    # r = 0.5, A = 1: outside [0.8, 1.2], but the min picks r·A, whose gradient was cut
    wrong = lambda n, o, a, e: torch.min((ratio(n, o) * a).detach(), clamp(ratio(n, o), e) * a).mean()
    message = check_clipped_objective.run(wrong).message
    assert "for r = 0.5, A = 1.0 the gradient should be 0.500" in message, message
    assert "r is outside [0.8, 1.2], but below 1−ε with A > 0: the min picks the unclipped term" in message
    assert "your unclipped term r·A carries no gradient" in message
    assert "inside the clip range" not in message


@pytest.mark.parametrize("wrong, hint", [
    (lambda n, o, a, e: torch.minimum(ratio(n, o) * a, ratio(n, o).clamp(min=1 - e) * a).mean(),
     "you clipped r at 1−ε only (r.clamp(min=1−ε)?)"),
    (lambda n, o, a, e: torch.where(a < 0, torch.maximum(_terms(ratio(n, o), a, e), 3 * a),
                                    _terms(ratio(n, o), a, e)).mean(),
     "that is the dual clip (Ye et al. 2020), max(min(r·A, clip(r)·A), 3·A)"),
    *((lambda n, o, a, e, c=c: torch.where(a < 0, torch.maximum(_terms(ratio(n, o), a, e), c * a),
                                            _terms(ratio(n, o), a, e)).mean(),
       f"that is the dual clip (Ye et al. 2020), max(min(r·A, clip(r)·A), {c:g}·A)")
      for c in (2.0, 5.0, 10.0)),  # c = 5 and 10 change only the r = 20 terms
    (lambda n, o, a, e: _l_clip(n / o, a, e), "your ratio is logprobs / old_logprobs"),
])
def test_one_sided_and_dual_clips_and_a_quotient_of_logprobs_are_named(wrong, hint):
    result = check_clipped_objective.run(wrong)
    assert not result.passed and hint in result.message, result.message
