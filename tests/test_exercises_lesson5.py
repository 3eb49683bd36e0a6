"""Lesson 5's checkers accept the solutions, reject the stub and the typical wrong answers with a hint."""

import pytest
import torch
import torch.nn.functional as F

from ppo_edu.exercises.lesson5 import check_bradley_terry_loss, check_last_token_scores
from ppo_edu.lm import bradley_terry_loss
from ppo_edu.lm.reward import last_token_scores


def stub(*args):
    raise NotImplementedError("exercise: replace this line with your solution")


# ----------------------------------------------------------------------------- Exercise 5.1
def test_bradley_terry_checker_accepts_the_reference_and_equivalent_forms():
    assert check_bradley_terry_loss.verify(bradley_terry_loss) is None
    assert check_bradley_terry_loss.verify(lambda c, r: -F.logsigmoid(c - r).mean()) is None


def test_bradley_terry_checker_reports_the_stub_as_not_done_and_falls_back(capsys):
    fn = check_bradley_terry_loss(stub)
    assert fn is bradley_terry_loss
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda c, r: F.softplus(c - r).mean(), "rewarded the rejected"),
    (lambda c, r: F.logsigmoid(c - r).mean(), "its negative"),
    (lambda c, r: F.softplus(r - c).sum(), "summed"),
    (lambda c, r: torch.sigmoid(r - c).mean(), "negative *log*"),
    (lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(), "not finite"),
    (lambda c, r: F.softplus(r - c).mean().detach(), "no gradient"),
    (lambda c, r: F.softplus(r - c), "one number"),
    (lambda c, r: (r - c).clamp(min=0).mean(), "expected"),
])
def test_bradley_terry_checker_rejects_typical_mistakes_with_a_hint(wrong, hint):
    message = check_bradley_terry_loss.verify(wrong)
    assert message is not None and hint in message


def test_a_failing_learner_function_is_replaced_by_the_reference(capsys):
    fn = check_bradley_terry_loss(lambda c, r: F.softplus(c - r).mean())
    assert fn is bradley_terry_loss
    out = capsys.readouterr().out
    assert out.startswith("❌") and "reference" in out


# ----------------------------------------------------------------------------- Exercise 5.2
def test_last_token_checker_accepts_the_reference():
    assert check_last_token_scores.verify(last_token_scores) is None
    passed = check_last_token_scores.run(last_token_scores)
    assert passed.passed and passed.fn is last_token_scores


def test_last_token_checker_reports_the_stub():
    result = check_last_token_scores.run(stub)
    assert not result.passed and result.fn is last_token_scores


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, m: s[:, -1], "last column"),
    (lambda s, m: s.gather(1, (m.sum(-1) - 1).unsqueeze(1)).squeeze(1), "left padding"),
    (lambda s, m: s.gather(1, m.sum(-1).clamp(max=s.size(1) - 1).unsqueeze(1)).squeeze(1), "off by one"),
    # the first padding position, read as argmax of mask == 0 (0 on a row with no padding)
    (lambda s, m: s[torch.arange(s.size(0)), (m == 0).int().argmax(-1)], "off by one"),
    # column 0 gives argmax's answer on the right-padded batch: the hint must not blame argmax
    (lambda s, m: s[:, 0], "You read each row's first token (column 0)"),
    # argmax returns the first maximum: the first real token (on the right-padded batch, column 0)
    (lambda s, m: s.gather(1, m.argmax(-1, keepdim=True)).squeeze(1), "you read the first real token"),
    (lambda s, m: (s * m).sum(-1), "expected"),
])
def test_last_token_checker_rejects_typical_mistakes_with_a_hint(wrong, hint):
    message = check_last_token_scores.verify(wrong)
    assert message is not None and hint in message


@pytest.mark.parametrize("wrong, side", [
    (lambda c, r: F.softplus(r.detach() - c).mean(), "r_rejected"),  # rejected scores never pushed down
    (lambda c, r: F.softplus(r - c.detach()).mean(), "r_chosen"),
])
def test_bradley_terry_checker_catches_a_detached_side(wrong, side):
    message = check_bradley_terry_loss.verify(wrong)
    assert message is not None and f"gradient w.r.t. {side} is wrong" in message
    # the mean over the 7 pairs of the first case: / 7, not "/ P" (P is the probability here)
    assert "sigmoid(r_c - r_r)) / 7 (the number of pairs)" in message


def test_bradley_terry_checker_tells_a_float_to_be_a_tensor():
    message = check_bradley_terry_loss.verify(lambda c, r: F.softplus(r - c).mean().item())
    assert message is not None and "as a tensor" in message


def test_bradley_terry_checker_catches_a_loss_cut_from_the_graph():
    message = check_bradley_terry_loss.verify(
        lambda c, r: torch.tensor(F.softplus(r - c).mean().item(), requires_grad=True))
    assert message is not None and "no gradient back to the scores" in message


@pytest.mark.parametrize("wrong", [
    lambda s, m: s.gather(1, m.sum(-1).unsqueeze(1)).squeeze(1),
    lambda s, m: s[torch.arange(len(s)), m.sum(-1)],
])
def test_last_token_checker_names_the_off_by_one_that_runs_off_the_end(wrong):
    message = check_last_token_scores.verify(wrong)
    assert message is not None and "off by one" in message and "out of bounds" in message


def test_last_token_checker_names_first_pad_minus_one_on_a_row_without_padding():
    """gather() refuses index -1; the hint must not call it 'len(row)' (a different mistake)."""
    def wrong(s, m):
        return s.gather(1, ((m == 0).long().argmax(-1) - 1).unsqueeze(1)).squeeze(1)

    message = check_last_token_scores.verify(wrong)
    assert "the first padding position - 1" in message and "len(row)" not in message


def test_last_token_gather_without_squeeze_is_told_the_shape():
    # gather(...) keeps a (B, 1) column: the right scores, the wrong shape. Compared with the
    # (B,) answer it would broadcast to (B, B), so the shape must be checked before the values
    def unsqueezed(scores, mask):
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return scores.gather(1, last.unsqueeze(1))

    message = check_last_token_scores.verify(unsqueezed)
    assert message is not None and "expected shape (3,) (one score per row)" in message


@pytest.mark.parametrize("capped", [
    lambda c, r: -torch.log(torch.sigmoid(c - r) + 1e-8).mean(),  # epsilon inside the log
    lambda c, r: F.binary_cross_entropy(torch.sigmoid(c - r), torch.ones_like(c)),  # its -100 floor
    lambda c, r: F.softplus(torch.clamp(r - c, -50, 50)).mean(),  # a clamp
])
def test_a_loss_capped_for_confidently_wrong_pairs_is_told_the_numbers_of_both_pairs(capped):
    """The check scores two pairs (gaps -200 and +3) and compares their mean: the message says
    so, instead of quoting the mean (about 100) as the loss of the -200 pair alone (about 200)."""
    message = check_bradley_terry_loss.verify(capped)
    assert message is not None and "gaps r_chosen - r_rejected = -200 and +3" in message
    assert "should be about 100.02 (the -200 pair alone costs about 200" in message
    assert "capped for a confidently wrong pair" in message


def test_an_overflowing_exp_is_named_beside_an_underflowing_sigmoid():
    message = check_bradley_terry_loss.verify(lambda c, r: torch.log1p(torch.exp(r - c)).mean())
    assert message is not None and "not finite" in message and "exp(200) overflows" in message


def test_the_argmax_of_the_mask_is_told_it_finds_the_first_real_token():
    def first_one(token_scores, attention_mask):
        return token_scores.gather(1, attention_mask.argmax(-1, keepdim=True)).squeeze(1)

    def last_one(token_scores, attention_mask):
        positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
        return token_scores.gather(1, (positions * attention_mask).argmax(-1, keepdim=True)).squeeze(1)

    hint = check_last_token_scores.verify(first_one)
    assert "argmax returns the first maximum" in hint and "not the last one" in hint
    assert check_last_token_scores.verify(last_one) is None


@pytest.mark.parametrize("naive", [
    lambda c, r: -torch.log(torch.sigmoid((c - r).double())).mean(),
    lambda c, r: torch.log1p(torch.exp((r - c).double())).mean(),
], ids=["log-sigmoid", "log1p-exp"])
def test_a_naive_loss_computed_in_float64_is_told_float64_only_moves_the_overflow(naive):
    """float64 survives a gap of -200 (sigmoid(-200) is about 1e-87 there), not one of -2000."""
    message = check_bradley_terry_loss.verify(naive)
    assert message is not None and "not finite" in message, message
    assert "gaps r_chosen - r_rejected = -2000 and +3" in message and "even in float64" in message
    assert "only moves the overflow" in message


def test_a_negative_loss_is_told_a_negative_log_likelihood_is_never_negative():
    message = check_bradley_terry_loss.verify(lambda c, r: F.logsigmoid(r - c).mean())
    assert message is not None and "your loss is negative" in message, message
    assert "negative log-likelihood" in message and "never negative" in message
    assert "the minus sign is missing and the scores are swapped" in message
    # the sign mistakes named before keep their own hints
    assert "its negative" in check_bradley_terry_loss.verify(lambda c, r: F.logsigmoid(c - r).mean())
    assert "rewarded the rejected" in check_bradley_terry_loss.verify(lambda c, r: F.softplus(c - r).mean())


@pytest.mark.parametrize("one_before", [
    lambda s, m: s.gather(1, (m.size(1) - 2 - m.flip(1).argmax(1)).unsqueeze(1)).squeeze(1),
    lambda s, m: s[torch.arange(len(s)), m.size(1) - 2 - m.flip(1).argmax(1)],
], ids=["gather", "indexing"])
def test_reading_one_before_the_last_real_token_is_named_off_by_one(one_before):
    message = check_last_token_scores.verify(one_before)
    assert message is not None and "one before each row's last real token (off by one" in message, message
    assert "L - 1 - attention_mask.flip(1).argmax(-1)" in message
