"""Evaluation helpers, the memory estimate and the plots of lesson 6."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from ppo_edu.rlhf import frozen_reference
from ppo_edu.rlhf.evaluation import distinct_n, evaluate_policy, opening_prompts
from ppo_edu.rlhf.memory import estimate_ppo_memory, gpt2_parameter_count
from ppo_edu.rlhf.plots import plot_history
from ppo_edu.rlhf.toy import toy_lm, toy_tokenizer


def test_opening_prompts_keep_two_to_four_words_and_leave_something_to_continue():
    texts = ["one two three four five six", "a b", "x y z", "It was<br />great fun indeed"]
    prompts = opening_prompts(texts, seed=0)
    assert len(prompts) == 3  # "a b" has nothing left to continue
    for p, t in zip(prompts, [texts[0], texts[2], "It was great fun indeed"]):
        assert t.startswith(p) and 2 <= len(p.split()) < len(t.split())
    assert "<br" not in prompts[-1]


def test_distinct_bigrams():
    assert distinct_n(["a b a b a b"]) == pytest.approx(2 / 5)
    assert distinct_n(["a b c d"]) == 1.0


def test_an_untrained_policy_has_zero_kl_to_itself():
    tok = toy_tokenizer()
    lm = toy_lm(tok)
    result = evaluate_policy(lm, frozen_reference(lm), tok, ["the movie", "a film", "not bad"],
                             lambda texts: torch.zeros(len(texts)), max_new_tokens=5)
    assert result.kl == pytest.approx(0.0, abs=1e-6)
    assert len(result.texts) == 3 and result.texts[0].startswith("the movie")
    again = evaluate_policy(lm, frozen_reference(lm), tok, ["the movie", "a film", "not bad"],
                            lambda texts: torch.zeros(len(texts)), max_new_tokens=5)
    assert again.texts == result.texts  # same seed, same samples: before/after are comparable


def test_gpt2_small_has_124m_parameters():
    assert gpt2_parameter_count(12, 768, 50257, 1024) == 124_439_808


def test_memory_estimate_grows_with_the_minibatch():
    small = dict(estimate_ppo_memory(mini_batch_size=8))
    large = dict(estimate_ppo_memory(mini_batch_size=64))
    assert large["total"] > small["total"] > 1.8  # weights, gradients and Adam alone are ~1.9 GiB


def test_plot_history_draws_one_panel_per_statistic():
    history = [{"step": i, "score": float(i), "kl": 0.1 * i} for i in range(1, 11)]
    fig = plot_history({"a": history, "b": history}, keys=("score", "kl", "judge"))
    assert len([ax for ax in fig.axes if ax.lines]) == 2  # "judge" is absent from both runs


def test_distinct_n_refuses_n_below_one():
    assert distinct_n(["a b a b"], n=2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        distinct_n(["a b c"], n=0)  # used to count empty "0-grams" and return 0.25


def test_evaluate_policy_on_no_prompts_is_a_clear_error():
    with pytest.raises(ValueError, match="prompts is empty"):
        evaluate_policy(None, None, None, [], reward_fn=lambda texts: torch.zeros(len(texts)))


def test_opening_prompts_skips_texts_too_short_to_continue():
    # documented: a text of min_words words or fewer has nothing left to continue
    assert opening_prompts(["one two", "a b c d e f", "x y"], seed=0) in (["a b"], ["a b c"], ["a b c d"])
