"""Per-token rewards, whitening and GAE over response tokens with masks."""

import pytest
import torch

from ppo_edu.advantages import compute_gae
from ppo_edu.rlhf.advantages import token_gae, token_rewards, whiten

MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])


def test_score_goes_on_the_last_real_token_not_on_padding():
    """TRL PR #5303: the score on a PAD after EOS is never seen by any real token."""
    kl = torch.zeros(3, 4)
    rewards = token_rewards(torch.tensor([1.0, 2.0, 3.0]), kl, 0.1, MASK)
    assert rewards.tolist() == [[0, 0, 0, 1.0], [0, 2.0, 0, 0], [3.0, 0, 0, 0]]


def test_kl_penalty_is_subtracted_on_every_real_token():
    kl = torch.ones(3, 4)
    rewards = token_rewards(torch.zeros(3), kl, 0.5, MASK)
    torch.testing.assert_close(rewards, -0.5 * MASK.float())


def test_token_gae_is_lesson_3_gae_with_one_episode_per_row():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 4, generator=g) * MASK, torch.randn(3, 4, generator=g) * MASK
    adv, ret = token_gae(rewards, values, MASK, gamma=0.9, lam=0.8)
    last = MASK.sum(1) - 1
    terminated = torch.zeros(3, 4, dtype=torch.bool)
    terminated[torch.arange(3), last] = True
    zeros = torch.zeros(4, 3)
    ref_adv, ref_ret = compute_gae(rewards.T, values.T, terminated.T, torch.zeros_like(terminated.T),
                                   zeros, torch.zeros(3), gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, ref_adv.T * MASK)
    torch.testing.assert_close(ret, ref_ret.T * MASK)


def test_token_gae_is_zero_on_padding_whatever_the_padding_holds():
    rewards = torch.where(MASK.bool(), torch.ones(3, 4), torch.full((3, 4), 100.0))
    values = torch.where(MASK.bool(), torch.zeros(3, 4), torch.full((3, 4), float("nan")))
    adv, ret = token_gae(rewards, values, MASK, 1.0, 0.95)
    assert (adv[~MASK.bool()] == 0).all() and (ret[~MASK.bool()] == 0).all()
    assert torch.isfinite(adv).all()
    # no value after the last real token: row 1's last advantage is its reward minus V = 1
    assert adv[1, 1].item() == pytest.approx(1.0)


def test_lambda_one_gives_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.7]])
    adv, ret = token_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, torch.ones(1, 3))
    torch.testing.assert_close(adv, 1.0 - values)


def test_lambda_zero_gives_td_residuals():
    rewards = torch.tensor([[0.1, 0.2, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.7]])
    adv, _ = token_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.0)
    torch.testing.assert_close(adv, torch.tensor([[0.1 + 0.5 - 0.2, 0.2 + 0.7 - 0.5, 1.0 - 0.7]]))


def test_masks_with_holes_are_rejected():
    with pytest.raises(ValueError, match="contiguous prefix"):
        token_gae(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1, 0, 1]]))


def test_whiten_uses_real_entries_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 1000.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = whiten(x, mask)
    assert w[0, 3] == 0
    assert w[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert w[0, :3].std().item() == pytest.approx(1.0, abs=1e-4)
    kept = whiten(x, mask, shift_mean=False)
    assert kept[0, :3].mean().item() == pytest.approx(2.0, abs=1e-5)


def test_reward_whitening_only_scales_so_length_earns_nothing():
    """Two responses with the same score and no KL, 2 and 6 tokens long: their returns must
    stay equal. Adding the unscaled mean back, as TRL's masked_whiten(shift_mean=False) does,
    puts mean (1 - 1/std) on every token and gave them 1.58 and 0.42."""
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    rewards = token_rewards(torch.tensor([1.0, 1.0]), torch.zeros(2, 6), 0.2, mask)
    scaled = whiten(rewards, mask, shift_mean=False)
    real = mask.bool()
    std = rewards[real].std()
    torch.testing.assert_close(scaled[real], rewards[real] / std)
    _, returns = token_gae(scaled, torch.zeros(2, 6), mask, gamma=1.0, lam=1.0)  # the plain return
    assert returns[0, 0].item() == pytest.approx(returns[1, 0].item(), abs=1e-6)
    assert returns[0, 0].item() == pytest.approx(1.0 / std.item(), rel=1e-5)


def test_whiten_ignores_whatever_padding_holds():
    x = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    dirty = x.clone()
    dirty[0, 3], dirty[1, 2] = float("nan"), float("inf")
    for shift_mean in (True, False):
        w = whiten(dirty, mask, shift_mean=shift_mean)
        assert torch.isfinite(w).all()
        torch.testing.assert_close(w, whiten(x, mask, shift_mean=shift_mean))


@pytest.mark.parametrize("mask", [torch.tensor([[2, 2, 0, 0]]), torch.tensor([[1.0, 1.0, 0.5, 0.0]])])
def test_a_mask_that_is_not_zeros_and_ones_is_refused(mask):
    """A 2 put the score on padding (token_rewards gave [-0.2, -0.2, 0, 1]); a 0.5 half counted a token."""
    from ppo_edu.rlhf.kl import kl_penalty

    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        token_rewards(torch.tensor([1.0]), torch.ones(1, 4), 0.2, mask)
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        token_gae(torch.ones(1, 4), torch.zeros(1, 4), mask)
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        whiten(torch.arange(4.0)[None], mask)
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        kl_penalty(torch.zeros(1, 4), torch.zeros(1, 4), mask)


def test_a_response_with_no_real_token_is_refused():
    # the score would go to index -1: the last column, padding
    with pytest.raises(ValueError, match="a row of the mask has no real token"):
        token_rewards(torch.tensor([1.0, 1.0]), torch.zeros(2, 3), 0.2, torch.tensor([[1, 1, 0], [0, 0, 0]]))


def test_whiten_needs_two_real_entries():
    # one real entry: its variance is 0/0, and the whitened value NaN
    with pytest.raises(ValueError, match="at least two real entries"):
        whiten(torch.tensor([[1.0, 0.0]]), torch.tensor([[1, 0]]))


def test_token_gae_ignores_non_finite_padding_and_refuses_a_non_finite_real_reward():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    clean = torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.0, 2.0]])
    dirty = clean.clone()
    dirty[0, 2] = float("nan")
    advantages, returns = token_gae(dirty, torch.zeros(2, 3), mask)
    assert torch.isfinite(advantages).all() and advantages[0, 2] == 0 and returns[0, 2] == 0
    torch.testing.assert_close(advantages, token_gae(clean, torch.zeros(2, 3), mask)[0])
    dirty[1, 1] = float("nan")  # on a real token: never trained on
    with pytest.raises(ValueError, match="rewards"):
        token_gae(dirty, torch.zeros(2, 3), mask)


def test_token_gae_refuses_gamma_zero():
    with pytest.raises(ValueError, match="need 0 < gamma <= 1"):
        token_gae(torch.ones(1, 3), torch.zeros(1, 3), torch.ones(1, 3), gamma=0.0)


def test_whiten_adds_its_epsilon_inside_the_square_root():
    # TRL's form, (x - mean) * rsqrt(var + 1e-8): on a spread of 1e-4 the epsilon matters
    # (1 / (std + 1e-8) would give +-0.707)
    out = whiten(torch.tensor([[0.0, 1e-4]], dtype=torch.float64), torch.ones(1, 2))
    half = 0.5e-4 / (5e-9 + 1e-8) ** 0.5  # unbiased variance of (0, 1e-4): 5e-9
    assert out.tolist()[0] == pytest.approx([-half, half], rel=1e-9)
