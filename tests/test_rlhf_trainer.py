"""The PPO trainer for language models: statistics, bad input, NaN/inf, learning."""

import numpy as np
import pytest
import torch
from packaging.version import Version

from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf.kl import kl_penalty, sequence_kl
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_tokenizer
from ppo_edu.rlhf.trainer import check_scores

PROMPTS = ["the movie", "a film", "i loved", "not bad", "the worst"]


def vowel_share(texts):
    """A toy reward: the share of vowels among the letters of the text."""
    out = []
    for t in texts:
        letters = [c for c in t if c.isalpha()]
        out.append(sum(c in "aeiou" for c in letters) / max(len(letters), 1))
    return torch.tensor(out)


def make_trainer(tok, reward_fn=vowel_share, lm=None, **overrides):
    settings = dict(batch_size=8, mini_batch_size=4, ppo_epochs=2, max_new_tokens=8, seed=0)
    settings.update(overrides)
    policy = PolicyWithValueHead(lm if lm is not None else eos_prone_lm(tok))
    return RLHFTrainer(policy, frozen_reference(policy), tok, reward_fn, PROMPTS, RLHFConfig(**settings))


def test_a_step_reports_every_statistic(tok):
    stats = make_trainer(tok).step()
    for key in ("score", "kl", "kl_coef", "entropy", "clip_fraction", "approx_kl", "response_length",
                "policy_loss", "value_loss", "explained_variance", "samples_per_s"):
        assert key in stats and np.isfinite(stats[key]), key


def test_the_trainer_steps_with_fused_adam_where_torch_has_it_for_the_cpu(tok):
    """torch 2.4 added fused Adam for the CPU; 2.2 and 2.3 (seen) refuse ``fused=True`` for CPU
    parameters, and the trainer falls back to plain Adam there."""
    trainer = make_trainer(tok)
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    fused_on_cpu = Version(torch.__version__).release >= (2, 4)  # a 2.4.0a0 build counts as 2.4
    assert bool(trainer.optimizer.defaults.get("fused")) is fused_on_cpu
    assert trainer.optimizer.defaults["eps"] == 1e-5
    n = sum(1 for _ in trainer.policy.parameters())
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == n  # a generator, listed once


def test_the_trainer_falls_back_to_plain_adam_where_torch_has_no_fused_one(tok, torch_without_fused_adam):
    n = sum(1 for _ in make_trainer(tok).policy.parameters())
    fallback = make_trainer(tok)
    assert not fallback.optimizer.defaults.get("fused")
    assert sum(len(g["params"]) for g in fallback.optimizer.param_groups) == n
    assert fallback.optimizer.param_groups[0]["lr"] == fallback.config.learning_rate


def test_fused_adam_takes_the_steps_plain_adam_takes():
    from ppo_edu.optim import adam

    torch.manual_seed(0)
    a = torch.nn.Linear(16, 4)
    b = torch.nn.Linear(16, 4)
    b.load_state_dict(a.state_dict())
    start = a.weight.detach().clone()
    fused, plain = adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2, eps=1e-5)
    for _ in range(5):
        x = torch.randn(8, 16)
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
    assert (a.weight - start).abs().max() > 1e-2  # five steps of 1e-2 moved it


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_first_step_has_exactly_zero_kl_and_ratio_one(tok, temperature):
    """Policy == reference and no dropout: KL is 0 and the first minibatch's ratio is 1. At
    T = 0.7 this also needs the log-probs to use the temperature the tokens were sampled
    with (without it the first KL is -0.08: TRL #351's negative KL)."""
    trainer = make_trainer(tok, ppo_epochs=1, mini_batch_size=8, temperature=temperature)
    trainer.policy.train()  # dropout must stay off even in train mode
    stats = trainer.step()
    assert stats["kl"] == 0.0
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-7)
    assert stats["clip_fraction"] == 0.0


def test_reported_kl_is_the_kl_in_the_penalty(tok):
    """TRL #1161: the KL in the logs must be the KL subtracted from the rewards."""
    with pytest.warns(UserWarning, match="kl_estimator='k3' puts k3 in each token's reward"):
        trainer = make_trainer(tok, kl_estimator="k3")
    trainer.train(steps=2, progress=False)  # move the policy away from the reference
    batch = trainer.rollout(trainer.next_prompts())
    beta = trainer.kl_ctl.value
    penalised = (batch.scores - batch.rewards.sum(1)) / beta  # what the rewards lost, per sample
    torch.testing.assert_close(penalised, sequence_kl(batch.kl, batch.mask), atol=1e-5, rtol=1e-4)
    expected = kl_penalty(batch.logprobs, batch.ref_logprobs, batch.mask, "k3")
    torch.testing.assert_close(batch.kl, expected)
    # and the KL that step() logs and hands the controller is that batch's, not a second estimate
    batches, seen_by_controller = [], []
    rollout, update = trainer.rollout, trainer.kl_ctl.update
    trainer.rollout = lambda prompts: batches.append(rollout(prompts)) or batches[-1]
    trainer.kl_ctl.update = lambda kl, n: seen_by_controller.append(kl) or update(kl, n)
    beta = trainer.kl_ctl.value
    stats = trainer.step()
    per_sample = sequence_kl(batches[0].kl, batches[0].mask)
    logged = per_sample.mean().item()
    assert stats is trainer.history[-1] and stats["kl"] > 0
    assert stats["kl"] == pytest.approx(logged, rel=1e-6)
    assert seen_by_controller == [pytest.approx(logged, rel=1e-6)]
    # the logged beta and reward are the ones this batch was penalised with, not the beta the
    # controller set afterwards for the next batch
    assert trainer.kl_ctl.value != beta
    assert stats["kl_coef"] == beta
    penalised_reward = (batches[0].scores - beta * per_sample).mean().item()
    assert stats["reward"] == pytest.approx(penalised_reward, rel=1e-6)
    assert stats["reward"] == pytest.approx(batches[0].rewards.sum(1).mean().item(), rel=1e-5)


def test_ppo_raises_the_reward(tok):
    """A reward for longer texts: the policy learns to hold back its (likely) EOS."""
    def longer(texts):
        return torch.tensor([len(t) / 20 for t in texts])

    trainer = make_trainer(tok, reward_fn=longer, batch_size=16, mini_batch_size=8, ppo_epochs=4,
                           learning_rate=3e-3, init_kl_coef=0.01, adaptive_kl=False)
    history = trainer.train(steps=8, progress=False)
    first = np.mean([h["score"] for h in history[:2]])
    last = np.mean([h["score"] for h in history[-2:]])
    assert last > first + 0.1, (first, last)
    assert history[-1]["response_length"] > history[0]["response_length"]


def test_learner_functions_are_plugged_in(tok):
    calls = []

    def my_gae(rewards, values, mask, gamma, lam):
        calls.append("gae")
        from ppo_edu.rlhf.advantages import token_gae
        return token_gae(rewards, values, mask, gamma, lam)

    def my_kl(logprobs, ref_logprobs, mask, estimator):
        calls.append("kl")
        return kl_penalty(logprobs, ref_logprobs, mask, estimator)

    trainer = make_trainer(tok)
    trainer.gae_fn, trainer.kl_fn = my_gae, my_kl
    trainer.step()
    assert calls == ["kl", "gae"]


def test_what_the_learner_functions_return_is_what_the_trainer_uses(tok):
    """Not only called: their outputs reach the rewards, the batch and the loss."""
    from ppo_edu.rlhf.advantages import token_gae

    def moved(trainer):  # the policy a little away from the reference, the same way each time
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in trainer.policy.lm.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        return trainer

    prompts = PROMPTS[:4] * 2
    plain = moved(make_trainer(tok)).rollout(prompts)
    trainer = moved(make_trainer(tok))
    trainer.kl_fn = lambda *args: 2 * kl_penalty(*args)
    trainer.gae_fn = lambda *args: tuple(3 * t for t in token_gae(*args))
    doubled = trainer.rollout(prompts)
    assert torch.equal(doubled.generation.response_ids, plain.generation.response_ids)
    assert plain.kl.abs().sum() > 0.1
    torch.testing.assert_close(doubled.kl, 2 * plain.kl)
    # r_t = -beta kl_t (+ the score on the last token): the extra KL is in the rewards
    torch.testing.assert_close(doubled.rewards - plain.rewards, -trainer.kl_ctl.value * plain.kl)
    _, returns = token_gae(doubled.rewards, doubled.values, doubled.generation.response_mask, 1.0, 0.95)
    torch.testing.assert_close(doubled.returns, 3 * returns)

    trainer = make_trainer(tok)
    head = [p.detach().clone() for p in trainer.policy.value_head.parameters()]
    trainer.value_loss_fn = lambda values, *rest: 7.0 + 0 * values.sum()  # no gradient for the head
    stats = trainer.step()
    assert stats["value_loss"] == pytest.approx(7.0)
    assert all(torch.equal(a, b) for a, b in zip(head, trainer.policy.value_head.parameters()))
    default = make_trainer(tok)
    default.step()
    assert not all(torch.equal(a, b) for a, b in zip(head, default.policy.value_head.parameters()))


def test_reward_of_the_wrong_shape_is_rejected(tok):
    trainer = make_trainer(tok, reward_fn=lambda texts: torch.zeros(len(texts), 1))
    with pytest.raises(ValueError, match=r"reward_fn returned shape \(8, 1\) for 8 texts"):
        trainer.step()


def test_nan_reward_is_rejected_naming_the_text(tok):
    def reward(texts):
        out = torch.zeros(len(texts))
        out[3] = float("nan")
        return out

    with pytest.raises(ValueError, match="reward_fn returned nan .* for text 3"):
        make_trainer(tok, reward_fn=reward).step()


def test_diverged_weights_stop_training_with_a_clear_error(tok):
    trainer = make_trainer(tok, lm=toy_lm(tok))
    with torch.no_grad():
        trainer.policy.value_head.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="values is NaN/inf at response 0"):
        trainer.step()


def test_nan_loss_is_never_stepped_on(tok):
    trainer = make_trainer(tok, lm=toy_lm(tok))
    batch = trainer.rollout(trainer.next_prompts())
    batch.advantages[0, 0] = float("nan")
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    with pytest.raises(ValueError, match="advantages contains NaN or inf"):
        trainer.ppo_update(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_a_nan_loss_is_never_stepped_on_even_when_its_inputs_pass_their_checks(tok):
    """A NaN return reaches the loss (the value loss does not check its targets): the
    trainer's own guard must stop before the optimiser moves anything."""
    trainer = make_trainer(tok, lm=toy_lm(tok))
    batch = trainer.rollout(trainer.next_prompts())
    batch.returns[:, 0] = float("nan")
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    with pytest.raises(FloatingPointError, match="PPO loss is nan .* refusing to step"):
        trainer.ppo_update(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_an_infinite_gradient_is_never_stepped_on(tok):
    trainer = make_trainer(tok, lm=toy_lm(tok))
    batch = trainer.rollout(trainer.next_prompts())
    trainer.policy.value_head.weight.register_hook(lambda grad: grad * float("inf"))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    with pytest.raises(FloatingPointError, match="gradient norm is (inf|nan) .* refusing to step"):
        trainer.ppo_update(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_whiten_rewards_scales_the_token_rewards_and_adds_nothing(tok):
    plain = make_trainer(tok).rollout(PROMPTS[:4] * 2)
    whitened = make_trainer(tok, whiten_rewards=True).rollout(PROMPTS[:4] * 2)
    assert torch.equal(plain.generation.response_ids, whitened.generation.response_ids)
    real = plain.mask.bool()
    r = plain.rewards[real]
    # divided by their std, nothing added: a constant on every token would pay for length
    torch.testing.assert_close(whitened.rewards[real], r / r.std(), atol=1e-4, rtol=1e-4)
    assert (whitened.rewards[~real] == 0).all()


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_missing_eos_penalty_hits_only_the_responses_without_an_eos(pad_is_eos):
    """Whether pad == eos (GPT-2's usual setup) or not: with pad != eos the last column of a
    response that ended early is a pad, so reading "has an EOS" off the last column would
    penalise every response that did end."""
    tok = toy_tokenizer(pad_token=None if pad_is_eos else "<|pad|>")
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    trainer = make_trainer(tok, reward_fn=lambda texts: torch.zeros(len(texts)), missing_eos_penalty=1.5,
                           batch_size=16, max_new_tokens=4)
    batch = trainer.rollout(PROMPTS * 3 + PROMPTS[:1])
    ended = torch.tensor([bool((row[m.bool()] == tok.eos_token_id).any())
                          for row, m in zip(batch.generation.response_ids, batch.generation.response_mask)])
    assert ended.any() and (~ended).any(), "the test needs responses with and without an EOS"
    assert (batch.generation.response_ids[ended, -1] == tok.pad_token_id).any()
    torch.testing.assert_close(batch.scores, -1.5 * (~ended).float())


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_the_reward_reads_the_prompt_and_the_response_without_eos_or_padding_text(pad_is_eos):
    """A reward model scores what it reads: decoded with the special tokens left in, every
    response that ended early would end in "<|endoftext|>" and a run of pads."""
    tok = toy_tokenizer(pad_token=None if pad_is_eos else "<|pad|>")
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    read = []
    trainer = make_trainer(tok, reward_fn=lambda texts: read.extend(texts) or torch.zeros(len(texts)),
                           batch_size=16, max_new_tokens=6)
    prompts = PROMPTS * 3 + PROMPTS[:1]
    batch = trainer.rollout(prompts)
    gen = batch.generation
    ended = [bool((row[m.bool()] == tok.eos_token_id).any()) for row, m in zip(gen.response_ids, gen.response_mask)]
    assert any(ended), "the test needs responses that end early"
    expected = [p + tok.decode(row[m.bool()], skip_special_tokens=True)
                for p, row, m in zip(prompts, gen.response_ids, gen.response_mask)]
    assert read == batch.texts == expected
    assert not any(special in text for text in read for special in (tok.eos_token, tok.pad_token))


def test_a_clearly_negative_kl_warns_that_the_tokens_were_not_sampled_from_the_policy(tok):
    trainer = make_trainer(tok)
    trainer.kl_fn = lambda logprobs, ref, mask, estimator: kl_penalty(logprobs, ref, mask, estimator) - mask
    with pytest.warns(RuntimeWarning, match="not sampled from the policy"):
        trainer.step()


def test_advantages_are_whitened_over_the_real_tokens_only(tok):
    batch = make_trainer(tok, batch_size=16).rollout(PROMPTS * 3 + PROMPTS[:1])
    real = batch.mask.bool()
    assert (~real).any(), "the test needs padded responses"
    assert batch.advantages[real].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert batch.advantages[real].std().item() == pytest.approx(1.0, abs=1e-3)
    assert (batch.advantages[~real] == 0).all()


def test_what_padding_holds_does_not_change_the_update(tok):
    """The clipped surrogate is averaged over real tokens only: log-probs of -50 in the
    padding would otherwise count as ratios of e^50, all clipped."""
    import copy

    trainer = make_trainer(tok, batch_size=16, mini_batch_size=8, ppo_epochs=1)
    batch = trainer.rollout(PROMPTS * 3 + PROMPTS[:1])
    assert (~batch.mask.bool()).any(), "the test needs padded responses"
    garbage = copy.deepcopy(batch)
    garbage.logprobs[~batch.mask.bool()] = -50.0
    # torch before 2.4 cannot deepcopy a Generator: the copies get one in the same state.
    device = trainer.generator.device
    generators = [torch.Generator(device).set_state(trainer.generator.get_state()) for _ in range(2)]
    copies = [copy.deepcopy(trainer, {id(trainer.generator): g}) for g in generators]
    stats = [t.ppo_update(b) for t, b in zip(copies, (batch, garbage))]
    assert stats[0]["clip_fraction"] == stats[1]["clip_fraction"]
    assert stats[0]["policy_loss"] == pytest.approx(stats[1]["policy_loss"], abs=1e-6)


def test_empty_prompt_list_is_rejected(tok):
    policy = PolicyWithValueHead(toy_lm(tok))
    with pytest.raises(ValueError, match="prompts is empty"):
        RLHFTrainer(policy, frozen_reference(policy), tok, vowel_share, [], RLHFConfig())


def test_prompt_longer_than_the_context_is_rejected_before_training(tok):
    policy = PolicyWithValueHead(toy_lm(tok))  # 64-token context
    with pytest.raises(ValueError, match="context of 64 tokens"):
        RLHFTrainer(policy, frozen_reference(policy), tok, vowel_share,
                    ["the movie", "the movie was great " * 20], RLHFConfig(max_new_tokens=8))


def test_tokenizer_without_pad_token_is_rejected():
    tok = toy_tokenizer(pad_token=None)
    policy = PolicyWithValueHead(toy_lm(tok))
    with pytest.raises(ValueError, match="no pad token"):
        RLHFTrainer(policy, frozen_reference(policy), tok, vowel_share, PROMPTS, RLHFConfig())


def test_an_unfrozen_reference_is_rejected(tok):
    policy = PolicyWithValueHead(toy_lm(tok))
    with pytest.raises(ValueError, match="must be frozen"):
        RLHFTrainer(policy, toy_lm(tok), tok, vowel_share, PROMPTS, RLHFConfig())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_policy_is_rejected(tok, dtype):
    """Plain Adam on 2-byte weights: bf16 rounds lr-sized steps away, fp16 underflows Adam's moments."""
    policy = PolicyWithValueHead(toy_lm(tok).to(dtype))
    reference = frozen_reference(policy)
    with pytest.raises(ValueError, match=f"trainable parameters are {str(dtype)[6:]}.*float32"):
        RLHFTrainer(policy, reference, tok, vowel_share, PROMPTS, RLHFConfig())
    frozen_half = PolicyWithValueHead(toy_lm(tok))  # a 2-byte reference is the learner's choice
    RLHFTrainer(frozen_half, frozen_reference(frozen_half).to(dtype), tok, vowel_share, PROMPTS, RLHFConfig())


def test_a_reference_in_training_mode_is_rejected(tok):
    """Frozen weights are not enough: with dropout on, the reference's log-probs are noisy
    and the KL is non-zero even when its weights equal the policy's."""
    import copy

    from transformers import GPT2LMHeadModel

    from ppo_edu.rlhf.toy import toy_config

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(toy_config(tok, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1))
    reference = copy.deepcopy(lm).requires_grad_(False)  # a new model is in training mode
    policy = PolicyWithValueHead(lm)  # switches the policy's dropout off
    with pytest.raises(ValueError, match="training mode"):
        RLHFTrainer(policy, reference, tok, vowel_share, PROMPTS, RLHFConfig())
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        wanted = policy.lm(input_ids=ids).logits
        noisy = reference(input_ids=ids).logits
        calm = reference.eval()(input_ids=ids).logits
    assert not torch.allclose(noisy, wanted) and torch.equal(calm, wanted)
    RLHFTrainer(policy, reference, tok, vowel_share, PROMPTS, RLHFConfig())  # accepted in eval mode


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match="mini_batch_size"):
        RLHFConfig(batch_size=4, mini_batch_size=8)
    with pytest.raises(ValueError, match="kl_estimator"):
        RLHFConfig(kl_estimator="k2")


@pytest.mark.parametrize("settings, name", [
    (dict(gamma=0.0), "gamma"), (dict(gamma=1.5), "gamma"), (dict(lam=2.0), "lam"),
    (dict(lam=-0.1), "lam"), (dict(value_clip=-1.0), "value_clip"),
    (dict(max_grad_norm=0.0), "max_grad_norm"), (dict(vf_coef=-1.0), "vf_coef"),
    (dict(batch_size=8.5), "batch_size"), (dict(ppo_epochs=True), "ppo_epochs"),
    (dict(target_kl=float("nan")), "target_kl"), (dict(kl_horizon=0), "kl_horizon"),
    (dict(missing_eos_penalty=-1.0), "missing_eos_penalty"), (dict(learning_rate=0.0), "learning_rate"),
    (dict(batch_size=1, mini_batch_size=1), "batch_size must be >= 2"),
    (dict(temperature=float("inf")), "temperature"), (dict(learning_rate=float("inf")), "learning_rate"),
    (dict(init_kl_coef=float("inf")), "init_kl_coef"), (dict(target_kl=float("inf")), "target_kl"),
    (dict(missing_eos_penalty=float("inf")), "missing_eos_penalty"), (dict(vf_coef=float("nan")), "vf_coef"),
    (dict(batch_size=64, kl_horizon=10), "kl_horizon > batch_size / 5"),
])
def test_config_names_the_bad_value(settings, name):
    with pytest.raises(ValueError, match=name):
        RLHFConfig(**settings)


def test_clip_ranges_may_be_infinite_meaning_no_clipping(tok):
    inf = float("inf")
    stats = make_trainer(tok, epsilon=inf, value_clip=inf, max_grad_norm=inf, ppo_epochs=4,
                         learning_rate=1e-2).step()
    clipped = make_trainer(tok, ppo_epochs=4, learning_rate=1e-2).step()
    assert clipped["clip_fraction"] > 0 and clipped["value_clip_fraction"] > 0  # these settings do clip
    assert stats["clip_fraction"] == 0 and stats["value_clip_fraction"] == 0
    assert RLHFConfig(batch_size=64, kl_horizon=13, adaptive_kl=False).kl_horizon == 13  # unused then


def test_an_adaptive_controller_starting_at_zero_is_refused():
    """It multiplies beta, so from 0 it would silently stay a fixed beta = 0."""
    with pytest.raises(ValueError, match="adaptive_kl=False"):
        RLHFConfig(init_kl_coef=0.0)
    assert RLHFConfig(init_kl_coef=0.0, adaptive_kl=False).init_kl_coef == 0.0


@pytest.mark.parametrize("scores, match", [
    (["1.5", "2", "0", "1"], "numbers"),
    (torch.tensor([True, False, True, True]), "bool"),
    ([True, False, True, True], "numbers"),
])
def test_reward_scores_that_are_not_numbers_are_refused(scores, match):
    with pytest.raises(TypeError, match=match):
        check_scores(scores, 4, ["a", "b", "c", "d"])


def test_train_stops_at_the_time_budget(tok, monkeypatch):
    """A clock that advances one second per reading, so the outcome cannot depend on how
    busy the machine is: the budget check at t=1 lets a step start, the one at t=4 does not."""
    import itertools
    import types

    import ppo_edu.rlhf.trainer as trainer_module

    ticks = itertools.count()
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    trainer = make_trainer(tok)
    history = trainer.train(time_budget_s=1.5, progress=False)
    assert len(history) == 1


def test_anneal_lr_falls_linearly_over_the_steps_or_the_time_budget_and_is_set_back(tok, monkeypatch):
    """train(anneal_lr=True): step i of n runs at lr x (1 - i/n), the first at the full rate;
    under a time budget (a clock that only the steps move, 1 s each) at lr x (1 - s/budget);
    with both, the lower of the two; afterwards the rate is config.learning_rate again, and
    without the flag it never moves. Every parameter group gets the rate."""
    import types

    import ppo_edu.rlhf.trainer as trainer_module

    clock = types.SimpleNamespace(t=0.0)
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock.t))
    trainer = make_trainer(tok, learning_rate=4e-4)
    trainer.optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 4e-4})
    rates = []

    def step():
        rates.append([g["lr"] for g in trainer.optimizer.param_groups])
        clock.t += 1.0
        trainer.history.append({"score": 0.0, "kl": 0.0})
        return trainer.history[-1]

    monkeypatch.setattr(trainer, "step", step)
    for kwargs, fractions in (({"steps": 4}, [1, 0.75, 0.5, 0.25]),
                              ({"time_budget_s": 4.0}, [1, 0.75, 0.5, 0.25]),
                              ({"steps": 2, "time_budget_s": 8.0}, [1, 0.5]),  # steps run out first
                              ({"steps": 8, "time_budget_s": 2.0}, [1, 0.5])):
        rates.clear()
        trainer.train(progress=False, anneal_lr=True, **kwargs)
        assert rates == [pytest.approx([4e-4 * f] * 2) for f in fractions], kwargs
        assert [g["lr"] for g in trainer.optimizer.param_groups] == [4e-4, 4e-4]
    rates.clear()
    trainer.train(steps=3, progress=False)
    assert rates == [[4e-4, 4e-4]] * 3


def test_each_step_records_the_rate_it_ran_at_and_anneal_lr_must_be_a_bool(tok):
    trainer = make_trainer(tok, learning_rate=2e-4)
    history = trainer.train(steps=2, progress=False, anneal_lr=True)
    assert [row["learning_rate"] for row in history] == pytest.approx([2e-4, 1e-4])
    assert trainer.step()["learning_rate"] == 2e-4  # set back after the annealed call
    with pytest.raises(ValueError, match="anneal_lr must be True or False, got 'yes'"):
        trainer.train(steps=1, progress=False, anneal_lr="yes")


def test_k1_trains_without_the_k3_warning(tok):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = make_trainer(tok)  # k1, the default: no warning, building or stepping
        stats = trainer.step()
    assert trainer.config.kl_estimator == "k1" and np.isfinite(stats["kl"])
    with pytest.warns(UserWarning, match="kl_estimator='k3' puts k3 in each token's reward"):
        make_trainer(tok, kl_estimator="k3")


def test_a_tokenizer_or_reference_with_another_vocabulary_is_refused(tok):
    """A pad token added without resizing the model failed only inside the first step
    ("index out of range in self"); a reference over other tokens trained silently."""
    import copy

    policy = PolicyWithValueHead(toy_lm(tok))
    bigger = copy.deepcopy(tok)
    bigger.add_special_tokens({"pad_token": "<|newpad|>"})
    rows = policy.lm.get_input_embeddings().num_embeddings
    with pytest.raises(ValueError, match=f"has {len(bigger)} tokens but the policy's embedding has {rows} rows"):
        RLHFTrainer(policy, frozen_reference(policy), bigger, vowel_share, PROMPTS, RLHFConfig())
    other = toy_lm(tok)
    other.resize_token_embeddings(rows + 5)
    with pytest.raises(ValueError, match=f"reference model's embedding has {rows + 5} rows and the policy's {rows}"):
        RLHFTrainer(policy, frozen_reference(other), tok, vowel_share, PROMPTS, RLHFConfig())


def test_a_bad_judge_stops_the_step_before_the_policy_or_beta_move(tok):
    trainer = make_trainer(tok)
    trainer.judge_fn = lambda texts: torch.full((len(texts),), float("nan"))
    weights = [p.detach().clone() for p in trainer.policy.parameters()]
    beta = trainer.kl_ctl.value
    with pytest.raises(ValueError, match="judge_fn"):
        trainer.step()
    assert trainer.history == [] and trainer.kl_ctl.value == beta
    assert all(torch.equal(w, p) for w, p in zip(weights, trainer.policy.parameters()))


@pytest.mark.parametrize("arguments, message", [
    ({"steps": -3}, "steps must be an integer >= 1, got -3"),
    ({"steps": 2.5}, "steps must be an integer >= 1"),
    ({"time_budget_s": -1}, "time_budget_s must be a finite number of seconds > 0 or None"),
    ({"time_budget_s": float("nan")}, "time_budget_s must be a finite number of seconds > 0"),
    ({"steps": 3, "time_budget_s": float("inf")}, "for no limit, give steps alone"),
])
def test_train_refuses_budgets_that_mean_nothing(tok, arguments, message):
    with pytest.raises(ValueError, match=message):  # returned [] before
        make_trainer(tok).train(progress=False, **arguments)


def test_evaluation_names_the_policy_wrapper_instead_of_a_missing_config(tok):
    from ppo_edu.rlhf.evaluation import evaluate_policy

    trainer = make_trainer(tok)
    with pytest.raises(TypeError, match="got a PolicyWithValueHead: pass its .lm"):
        evaluate_policy(trainer.policy, trainer.reference, tok, PROMPTS, vowel_share)


# ---------------------------------------------------------------- what one PPO update does


def test_an_update_moves_the_policy_towards_its_positive_advantages(tok):
    # one minibatch, one epoch, no value loss: the step must raise L^CPI = mean(r_t A_t) above
    # its value at r = 1, i.e. raise the log-probs of tokens with A > 0 more than of A < 0
    trainer = make_trainer(tok, batch_size=16, mini_batch_size=16, ppo_epochs=1, vf_coef=0.0,
                           learning_rate=1e-3)
    batch = trainer.rollout(PROMPTS * 3 + PROMPTS[:1])
    trainer.ppo_update(batch)
    gen, real = batch.generation, batch.mask.bool()
    with torch.no_grad():
        new, _, _ = trainer.policy.logprobs_and_values(gen.input_ids, gen.attention_mask, gen.query_length)
    assert ((new - batch.logprobs) * batch.advantages)[real].sum() > 0


def test_with_vf_coef_zero_the_value_head_does_not_move(tok):
    trainer = make_trainer(tok, vf_coef=0.0)
    head = trainer.policy.value_head.weight.detach().clone()
    trainer.step()
    assert torch.equal(head, trainer.policy.value_head.weight)


def test_epsilon_is_the_clip_range_of_the_policy_ratio(tok):
    # a tiny epsilon with an unclipped value loss: the second epoch's ratios leave [1 - eps, 1 + eps]
    stats = make_trainer(tok, epsilon=1e-4, value_clip=float("inf"), ppo_epochs=2).step()
    assert stats["clip_fraction"] > 0


def _spy_on_optimizer_steps(trainer, before_step):
    step = trainer.optimizer.step

    def spying(*args, **kwargs):
        before_step()
        return step(*args, **kwargs)

    trainer.optimizer.step = spying


def test_each_minibatch_steps_on_its_own_gradient_clipped_to_max_grad_norm(tok):
    # no gradient left over from the minibatch before (zero_grad), and the norm clipped
    trainer = make_trainer(tok, max_grad_norm=1e-3)
    norms = []
    _spy_on_optimizer_steps(trainer, lambda: norms.append(torch.norm(torch.stack(
        [p.grad.norm() for p in trainer.policy.parameters() if p.grad is not None])).item()))
    trainer.step()
    assert len(norms) == 4 and max(norms) <= 1e-3 * 1.01, norms

    from ppo_edu.objectives import clipped_surrogate
    from ppo_edu.rlhf.losses import clipped_value_loss

    trainer = make_trainer(tok, mini_batch_size=8, ppo_epochs=2, max_grad_norm=float("inf"))
    batch = trainer.rollout(PROMPTS[:4] * 2)
    gen, cfg = batch.generation, trainer.config
    params = list(trainer.policy.parameters())
    differences = []

    def compare_with_a_fresh_gradient():  # one minibatch = the whole batch, in some order
        logprobs, values, _ = trainer.policy.logprobs_and_values(gen.input_ids, gen.attention_mask,
                                                                 gen.query_length)
        loss = (-clipped_surrogate(logprobs, batch.logprobs, batch.advantages, cfg.epsilon,
                                   mask=batch.mask).objective
                + cfg.vf_coef * clipped_value_loss(values, batch.values, batch.returns, batch.mask,
                                                   cfg.value_clip)[0])
        fresh = torch.autograd.grad(loss, params, allow_unused=True)
        differences.append(max((p.grad - f).abs().max().item() for p, f in zip(params, fresh)
                               if f is not None))

    _spy_on_optimizer_steps(trainer, compare_with_a_fresh_gradient)
    trainer.ppo_update(batch)
    assert len(differences) == 2 and max(differences) < 1e-5, differences


def test_every_epoch_reshuffles_the_minibatches(tok):
    trainer = make_trainer(tok, ppo_epochs=3)
    batch = trainer.rollout(PROMPTS[:4] * 2)
    orders = []
    permutation = trainer.rng.permutation

    class Recording:
        def permutation(self, n):
            orders.append(permutation(n).tolist())
            return np.array(orders[-1])

    trainer.rng = Recording()
    seen = []  # the rows each minibatch's forward pass gets, to check the orders drawn are used
    forward = trainer.policy.logprobs_and_values

    def recording(input_ids, attention_mask, query_length, temperature):
        seen.append(input_ids.clone())
        return forward(input_ids, attention_mask, query_length, temperature)

    trainer.policy.logprobs_and_values = recording
    trainer.ppo_update(batch)
    assert len(orders) == 3 and len({tuple(o) for o in orders}) > 1
    gen, size = batch.generation, trainer.config.mini_batch_size
    expected = []
    for order in orders:
        for start in range(0, len(order), size):
            rows = torch.tensor(order[start:start + size])
            width = gen.query_length + int(gen.response_lengths[rows].max())
            expected.append(gen.input_ids[rows, :width])
    assert len(seen) == len(expected) and all(torch.equal(a, b) for a, b in zip(seen, expected))


def test_the_controller_counts_the_samples_of_the_batch(tok):
    # the first step's KL is exactly 0, so the error is clipped to -0.2 and
    # beta <- beta (1 - 0.2 * batch_size / horizon)
    trainer = make_trainer(tok, batch_size=8, kl_horizon=10, init_kl_coef=0.2, target_kl=5.0)
    trainer.step()
    assert trainer.kl_ctl.value == pytest.approx(0.2 * (1 - 0.2 * 8 / 10))


def test_entropy_and_explained_variance_are_over_real_tokens(tok):
    trainer = make_trainer(tok, batch_size=16)
    batches = []
    rollout = trainer.rollout
    trainer.rollout = lambda prompts: batches.append(rollout(prompts)) or batches[-1]
    trainer.step()
    stats = trainer.step()  # the second step: the critic is no longer 0 everywhere
    batch = batches[-1]
    real = batch.mask.bool()
    assert (~real).any() and batch.values[real].abs().max() > 0
    assert stats["entropy"] == pytest.approx(batch.entropy[real].mean().item(), rel=1e-6)
    returns, values = batch.returns[real], batch.values[real]
    expected = 1 - (returns - values).var() / returns.var()
    assert stats["explained_variance"] == pytest.approx(expected.item(), rel=1e-6)


def test_the_entropy_is_that_of_the_sampling_distribution(tok):
    # the policy's logits are already divided by the temperature; dividing again would
    # report the entropy at T^2
    from ppo_edu.rlhf.logprobs import entropy_from_logits, lm_forward

    trainer = make_trainer(tok, temperature=0.7)
    batch = trainer.rollout(PROMPTS[:4] * 2)
    gen = batch.generation
    with torch.no_grad():
        raw, _ = lm_forward(trainer.policy.lm, gen.input_ids, gen.attention_mask, gen.query_length)
    torch.testing.assert_close(batch.entropy, entropy_from_logits(raw, 0.7) * batch.mask)


def test_each_pass_over_the_prompts_uses_every_prompt_once(tok):
    trainer = make_trainer(tok, batch_size=5, mini_batch_size=5)
    for _ in range(3):
        assert sorted(trainer.next_prompts()) == sorted(PROMPTS)


def test_a_nan_advantage_from_a_learner_gae_is_named(tok):
    from ppo_edu.rlhf.advantages import token_gae

    def broken_gae(rewards, values, mask, gamma, lam):
        advantages, returns = token_gae(rewards, values, mask, gamma, lam)
        advantages[0, 0] = float("nan")
        return advantages, returns

    trainer = make_trainer(tok)
    trainer.gae_fn = broken_gae
    with pytest.raises(FloatingPointError, match="advantages is NaN/inf at response 0"):
        trainer.step()


def test_a_batch_of_five_horizons_is_refused_when_configured():
    # 1 - 0.2 * 10 / 2 = 0: beta would be wiped out by the first KL below target
    with pytest.raises(ValueError, match="kl_horizon=2 with batch_size=10"):
        RLHFConfig(batch_size=10, mini_batch_size=5, kl_horizon=2)
    RLHFConfig(batch_size=10, mini_batch_size=5, kl_horizon=3)


def test_the_logged_approx_kl_is_k3_of_the_old_policy_to_the_new(tok):
    # one minibatch per epoch: the second epoch's log-probs have moved, and approx_kl must be
    # computed with r = pi_new / pi_old (swapping the two gives another number)
    from ppo_edu.objectives import approx_kl

    trainer = make_trainer(tok, mini_batch_size=8, ppo_epochs=2, learning_rate=1e-2)
    batch = trainer.rollout(PROMPTS[:4] * 2)
    orders, seen = [], []
    permutation = trainer.rng.permutation

    class Recording:
        def permutation(self, n):
            orders.append(torch.as_tensor(permutation(n)))
            return orders[-1].numpy()

    trainer.rng = Recording()
    forward = trainer.policy.logprobs_and_values

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append(out[0].detach())
        return out

    trainer.policy.logprobs_and_values = recording
    stats = trainer.ppo_update(batch)
    R = seen[0].shape[1]
    expected, swapped = [], []
    for order, new in zip(orders, seen):
        old, mask = batch.logprobs[order, :R], batch.mask[order, :R]
        expected.append(approx_kl(new, old, mask).item())
        swapped.append(approx_kl(old, new, mask).item())
    assert abs(np.mean(expected) - np.mean(swapped)) > 1e-4
    assert stats["approx_kl"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_non_finite_log_probs_on_padding_are_not_a_divergence(tok):
    # what a model gives after EOS is never trained on: an -inf there must not stop training
    trainer = make_trainer(tok)
    forward = trainer.policy.logprobs_and_values

    def minus_inf_on_padding(input_ids, attention_mask, query_length, *args, **kwargs):
        logprobs, values, logits = forward(input_ids, attention_mask, query_length, *args, **kwargs)
        padding = attention_mask[:, query_length:] == 0
        return logprobs.masked_fill(padding, float("-inf")), values, logits

    trainer.policy.logprobs_and_values = minus_inf_on_padding
    for _ in range(2):
        stats = trainer.step()
    assert np.isfinite(stats["kl"]) and np.isfinite(stats["approx_kl"])
