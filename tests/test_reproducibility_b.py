"""Reproducibility of the LM/RLHF side: the same seed gives the same numbers, whatever the
global RNGs (torch, numpy, random) hold, and no hidden dropout makes a measurement noisy."""

import copy
import random

import numpy as np
import torch

from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf.best_of_n import sample_and_score
from ppo_edu.rlhf.evaluation import evaluate_policy
from ppo_edu.rlhf.generation import encode_prompts, generate
from ppo_edu.rlhf.shaping import prefix_potentials
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_reward_model

PROMPTS = ["the movie", "a film", "not bad", "I liked"]


def _disturb_global_rngs(seed):
    torch.manual_seed(seed), torch.rand(3)
    np.random.seed(seed), np.random.rand(3)
    random.seed(seed), random.random()


def _length_reward(texts):
    return torch.tensor([len(t) / 10 for t in texts])


def test_evaluate_policy_measures_a_reference_in_training_mode_without_its_dropout(tok):
    """A reference left in training mode (dropout 0.1 in GPT-2's config) made the KL and
    the fluency noisy, drawn from the global torch RNG: the same seed, other numbers."""
    lm = toy_lm(tok)
    reference = toy_lm(tok).requires_grad_(False).train()
    runs = []
    for global_seed in (1, 2):
        _disturb_global_rngs(global_seed)
        runs.append(evaluate_policy(lm, reference, tok, PROMPTS, _length_reward, max_new_tokens=5, seed=3))
    a, b = runs
    assert a.texts == b.texts
    assert a.kl == b.kl and a.ref_nll == b.ref_nll
    evaluated = evaluate_policy(lm, copy.deepcopy(reference).eval(), tok, PROMPTS, _length_reward,
                                max_new_tokens=5, seed=3)  # the same models in eval mode: the same numbers
    assert (a.kl, a.ref_nll) == (evaluated.kl, evaluated.ref_nll)
    assert all(module.training for module in reference.modules())  # the caller's mode comes back


def test_prefix_potentials_of_a_reward_model_in_training_mode_are_not_noisy(tok):
    lm = eos_prone_lm(tok)
    rm = toy_reward_model(tok).train()
    q, qm = encode_prompts(tok, PROMPTS, 64, 6, add_bos=True)
    gen = generate(lm, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 1.0, torch.Generator().manual_seed(0))
    phis = []
    for global_seed in (1, 2):
        _disturb_global_rngs(global_seed)
        phis.append(prefix_potentials(rm, gen, tok.bos_token_id, tok.eos_token_id))
    assert torch.equal(phis[0], phis[1])
    assert torch.equal(phis[0], prefix_potentials(copy.deepcopy(rm).eval(), gen, tok.bos_token_id,
                                                  tok.eos_token_id))
    assert all(module.training for module in rm.modules())


def test_seeded_sampling_and_ppo_steps_ignore_the_global_rngs(tok):
    """What held in the audit, kept: sample_and_score and two RLHFTrainer steps give the same
    numbers (and weights) for one seed, with the global RNGs disturbed in between; and another
    seed gives other numbers (a seed silently replaced by a constant would pass the rest)."""
    lm = toy_lm(tok)
    runs = []
    for global_seed, seed in ((1, 5), (2, 5), (3, 6)):
        _disturb_global_rngs(global_seed)
        scores, _ = sample_and_score(lm, tok, PROMPTS[:2], _length_reward, num_samples=2, max_new_tokens=4,
                                     seed=seed)
        policy = PolicyWithValueHead(copy.deepcopy(lm))
        config = RLHFConfig(seed=seed, batch_size=4, mini_batch_size=2, max_new_tokens=4, ppo_epochs=2)
        trainer = RLHFTrainer(policy, frozen_reference(policy), tok, _length_reward, PROMPTS * 2, config)
        _disturb_global_rngs(global_seed + 10)  # between construction and the steps, too
        stats = [trainer.step() for _ in range(2)]
        for row in stats:
            row.pop("samples_per_s"), row.pop("time_s")
        runs.append((scores, stats, [p.detach().clone() for p in policy.parameters()]))
    (s1, h1, w1), (s2, h2, w2), (s3, h3, w3) = runs
    assert np.array_equal(s1, s2)
    assert h1 == h2
    assert all(torch.equal(x, y) for x, y in zip(w1, w2))
    assert not np.array_equal(s3, s1) and h3 != h1
    assert not all(torch.equal(x, y) for x, y in zip(w3, w1))
