"""Evaluation helpers, the memory estimate and the plots of lesson 6."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from ppo_edu.plots import smoothed
from ppo_edu.rlhf import frozen_reference
from ppo_edu.rlhf.evaluation import distinct_n, evaluate_policy, opening_prompts
from ppo_edu.rlhf.memory import estimate_ppo_memory, gpt2_parameter_count
from ppo_edu.rlhf.plots import plot_history
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_tokenizer


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


def test_evaluate_policy_measures_its_own_samples():
    """KL, fluency, score and judge recomputed by hand on the same draws: the exact KL summed
    over the response tokens only, the reference's NLL per real token, the reward and the
    judge of prompt + response."""
    from ppo_edu.rlhf.generation import context_length_of, encode_prompts, generate
    from ppo_edu.rlhf.logprobs import lm_forward

    tok = toy_tokenizer()
    policy, reference = eos_prone_lm(tok), frozen_reference(toy_lm(tok, seed=1))
    prompts = ["the movie", "a film was", "not bad", "i", "the worst of it"]
    lengths = lambda texts: torch.tensor([float(len(t)) for t in texts])
    e_count = lambda texts: [t.count("e") for t in texts]
    result = evaluate_policy(policy, reference, tok, prompts, lengths, e_count, max_new_tokens=6, seed=3)

    q, qm = encode_prompts(tok, prompts, context_length_of(policy), 6, "cpu", add_bos=True)
    gen = generate(policy, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 1.0, torch.Generator().manual_seed(3))
    assert tok.batch_decode(gen.response_ids, skip_special_tokens=True) == result.responses
    mask = gen.response_mask.float()
    assert 0 < mask.sum() < mask.numel()  # some responses ended early: padding to leave out
    with torch.no_grad():
        logp = lm_forward(policy, gen.input_ids, gen.attention_mask, gen.query_length)[0].log_softmax(-1)
        ref_logp = lm_forward(reference, gen.input_ids, gen.attention_mask, gen.query_length)[0].log_softmax(-1)
    kl = ((logp.exp() * (logp - ref_logp)).sum(-1) * mask).sum(1)
    nll = -(ref_logp.gather(-1, gen.response_ids.unsqueeze(-1)).squeeze(-1) * mask).sum(1) / mask.sum(1)
    assert result.kl > 0.01
    assert result.kl == pytest.approx(kl.mean().item(), rel=1e-4)
    assert result.ref_nll == pytest.approx(nll.mean().item(), rel=1e-4)
    texts = [p + r for p, r in zip(prompts, result.responses)]
    assert result.texts == texts
    assert result.score == pytest.approx(lengths(texts).mean().item())
    assert result.judge == pytest.approx(sum(e_count(texts)) / len(texts))
    assert result.response_length == pytest.approx(mask.sum(1).mean().item())


def test_evaluate_policy_in_chunks_at_a_temperature_pairs_each_prompt_with_its_own_sample():
    """Lesson 6 evaluates 128-256 prompts in chunks of 64 at the training temperature: the
    same hand computation chunk by chunk (one generator, drawn from in order), with the KL of
    the tempered distributions and the population std of the scores."""
    from ppo_edu.rlhf.generation import context_length_of, encode_prompts, generate
    from ppo_edu.rlhf.logprobs import lm_forward

    tok = toy_tokenizer()
    policy, reference = eos_prone_lm(tok), frozen_reference(toy_lm(tok, seed=1))
    policy.train()
    prompts = ["the movie", "a film was", "not bad", "i", "the worst of it"]
    lengths = lambda texts: torch.tensor([float(len(t)) for t in texts])
    result = evaluate_policy(policy, reference, tok, prompts, lengths, max_new_tokens=6, seed=3,
                             temperature=0.7, batch_size=2)
    assert policy.training  # the caller's mode is given back
    policy.eval()  # as evaluate_policy samples (no dropout)
    generator, responses, kls = torch.Generator().manual_seed(3), [], []
    for start in (0, 2, 4):
        chunk = prompts[start:start + 2]
        q, qm = encode_prompts(tok, chunk, context_length_of(policy), 6, "cpu", add_bos=True)
        gen = generate(policy, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 0.7, generator)
        responses += tok.batch_decode(gen.response_ids, skip_special_tokens=True)
        with torch.no_grad():
            args = (gen.input_ids, gen.attention_mask, gen.query_length)
            logp = (lm_forward(policy, *args)[0] / 0.7).log_softmax(-1)
            ref_logp = (lm_forward(reference, *args)[0] / 0.7).log_softmax(-1)
        kls.append(((logp.exp() * (logp - ref_logp)).sum(-1) * gen.response_mask).sum(1))
    assert result.responses == responses
    assert result.texts == [p + r for p, r in zip(prompts, responses)]
    assert result.kl == pytest.approx(torch.cat(kls).mean().item(), rel=1e-4)
    assert result.kls == pytest.approx(torch.cat(kls).numpy(), rel=1e-4)  # each prompt's own
    assert result.kls.min() < 0.9 * result.kls.max()  # they differ: the order is checked
    scores = lengths(result.texts).numpy()
    assert result.score_std == pytest.approx(float(np.std(scores)), rel=1e-6)  # population std
    assert result.score_std != pytest.approx(float(np.std(scores, ddof=1)), rel=1e-3)


def test_distinct_bigrams_are_counted_over_the_responses_alone():
    """Lesson 6 asserts a drop in distinct-2 of the responses; the prompts' words must not count."""
    from ppo_edu.lm import load_lm

    lm, tokenizer = load_lm("tiny", "cpu")
    prompts = ["The film was"] * 4  # the prompts repeat their bigrams, the sampled responses hardly
    result = evaluate_policy(lm, frozen_reference(lm), tokenizer, prompts,
                             lambda texts: torch.zeros(len(texts)), max_new_tokens=12, seed=0, batch_size=3)
    assert sum(len(r.split()) - 1 for r in result.responses) >= 8  # bigrams to count
    assert result.distinct2 == pytest.approx(distinct_n(result.responses))
    assert result.distinct2 != pytest.approx(distinct_n(result.texts))


def test_gpt2_small_has_124m_parameters():
    assert gpt2_parameter_count(12, 768, 50257, 1024) == 124_439_808


def test_memory_estimate_rows_for_gpt2_small():
    """Each row worked out by hand for gpt2 (124,439,808 fp32 parameters), a minibatch of 16
    sequences of 16 + 32 tokens, 64 responses sampled."""
    rows = dict(estimate_ppo_memory())
    weights = 124_439_808 * 4 / 2**30  # 0.4636 GiB
    assert rows["policy weights (+ value head)"] == pytest.approx(weights)
    assert rows["gradients"] == pytest.approx(weights)
    assert rows["Adam moments (2 per weight)"] == pytest.approx(2 * weights)
    assert rows["reference model weights"] == pytest.approx(weights)
    assert rows["reward model weights"] == 0.0
    # Korthikanti et al.: s b h (34 + 5 a s / h) per layer in 16-bit = 48*16*768*(34 + 3.75), x2 fp32, x12 layers
    assert rows["activations, one minibatch of 16 x 48 tokens"] == pytest.approx(534_380_544 / 2**30)
    # logits, log-softmax and both gradients: 4 x 16 x 32 x 50257 fp32 values
    assert rows["logits of the minibatch (16 x 32 x 50257)"] == pytest.approx(411_705_344 / 2**30)
    # keys and values: 2 x 12 layers x 64 x 48 x 768 fp32
    assert rows["KV cache while sampling 64 responses"] == pytest.approx(226_492_416 / 2**30)
    assert rows["total"] == pytest.approx(sum(v for k, v in rows.items() if k != "total"))
    assert rows["total"] == pytest.approx(3.41, abs=0.005)


def test_memory_estimate_grows_with_the_minibatch():
    small = dict(estimate_ppo_memory(mini_batch_size=8))
    large = dict(estimate_ppo_memory(mini_batch_size=64))
    assert large["total"] > small["total"] > 1.8  # weights, gradients and Adam alone are ~1.9 GiB


def test_plot_history_draws_one_panel_per_statistic():
    history = [{"step": i, "score": float(i), "kl": 0.1 * i} for i in range(1, 11)]
    fig = plot_history({"a": history, "b": history}, keys=("score", "kl", "judge"))
    assert len([ax for ax in fig.axes if ax.lines]) == 2  # "judge" is absent from both runs


def test_plot_history_names_a_statistic_no_run_records():
    history = [{"step": i, "score": float(i), "kl": 0.1 * i} for i in range(1, 11)]
    with pytest.raises(KeyError, match=r"no history records \['kll'\]; they record \['kl', 'score', 'step'\]"):
        plot_history(history, keys=("score", "kll"))  # a typo used to drop the panel silently


def test_plot_history_smoothing_skips_a_nan_instead_of_spreading_it():
    # the trainer records explained variance as NaN when a step's returns do not vary
    history = [{"step": i, "explained_variance": 0.5} for i in range(1, 9)]
    history[2]["explained_variance"] = float("nan")
    fig = plot_history(history, keys=("explained_variance",), window=5)
    smooth = fig.axes[0].lines[1].get_ydata()
    assert len(smooth) == 8 and np.allclose(smooth, 0.5)  # before: NaN over a whole window


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


def test_plot_history_draws_the_kl_coefficient_as_set_and_the_measurements_smoothed():
    """beta is the controller's setting, not a noisy measurement: a trailing mean of it would
    show a coefficient no step used (here 0.2 held for five steps, then 0.1)."""
    history = [{"step": i, "score": float(i % 2), "kl_coef": 0.2 if i <= 5 else 0.1} for i in range(1, 11)]
    fig = plot_history({"a": history, "b": history}, keys=("score", "kl_coef"))
    score_ax, beta_ax = fig.axes[:2]
    assert len(beta_ax.lines) == 2  # one per run, no faint raw copy under a smoothed one
    for line in beta_ax.lines:
        assert list(line.get_ydata()) == [h["kl_coef"] for h in history] and line.get_alpha() is None
    assert len(score_ax.lines) == 4  # raw and smoothed, per run
    np.testing.assert_allclose(score_ax.lines[1].get_ydata(), smoothed([h["score"] for h in history], 5))
    assert [t.get_text() for t in score_ax.get_legend().get_texts()] == ["a", "b"]
