"""Gaps found by a mutation audit of rlhf.policy, rlhf.evaluation, rlhf.best_of_n, rlhf.memory
and rlhf.toy: each test says in its docstring which slip it catches."""

import json
import math

import numpy as np
import pytest
import torch

from ppo_edu.lm.reward import text_ids
from ppo_edu.rlhf.best_of_n import (
    best_of_n_curve,
    best_of_n_kl,
    best_of_n_weights,
    sample_and_score,
)
from ppo_edu.rlhf.evaluation import distinct_n, evaluate_policy, opening_prompts
from ppo_edu.rlhf.generation import context_length_of, encode_prompts, generate
from ppo_edu.rlhf.logprobs import lm_forward
from ppo_edu.rlhf.memory import GiB, estimate_ppo_memory
from ppo_edu.rlhf.policy import PolicyWithValueHead, frozen_reference
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_reward_model

PROMPTS = ["the movie", "a film was", "not bad", "i", "the worst of it"]


def zeros_fn(texts):
    return torch.zeros(len(texts))


def too_long_prompt(tok):
    """A prompt that fits the toy context (64) with 1 new token but not with 10."""
    prompt = " ".join(["the movie was great"] * 7)
    assert 1 + len(text_ids(tok, prompt)) + 1 <= 64 < 1 + len(text_ids(tok, prompt)) + 10
    return prompt


# --------------------------------------------------------------------------- rlhf.policy


def test_the_value_head_starts_at_exactly_zero(tok):
    """Catches a value head whose bias (or weight) keeps PyTorch's random init: V must be 0
    everywhere at the start, or its noise drowns the first advantages."""
    policy = PolicyWithValueHead(toy_lm(tok))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        _, values, _ = policy.logprobs_and_values(ids, torch.ones_like(ids), 2)
    assert torch.equal(values, torch.zeros(1, 4))
    assert not policy.value_head.bias.any() and not policy.value_head.weight.any()


def test_a_bfloat16_lm_gets_a_bfloat16_value_head_and_float32_outputs(tok):
    """Catches a value head left in float32 beside a half-precision LM (the forward fails on the
    dtype mismatch) and values handed back in bfloat16 instead of float32."""
    policy = PolicyWithValueHead(toy_lm(tok).to(torch.bfloat16))
    assert policy.value_head.weight.dtype == policy.value_head.bias.dtype == torch.bfloat16
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        lp, values, logits = policy.logprobs_and_values(ids, torch.ones_like(ids), 2)
    assert values.dtype == logits.dtype == lp.dtype == torch.float32


def test_from_pretrained_puts_the_policy_on_the_requested_device(tok, tmp_path):
    """Catches from_pretrained ignoring ``device`` (the policy stays on the CPU). The meta device
    stands in for a GPU so that this runs on any machine."""
    PolicyWithValueHead(toy_lm(tok)).save_pretrained(tmp_path)
    policy = PolicyWithValueHead.from_pretrained(tmp_path, device="meta")
    assert policy.device.type == "meta"
    assert {p.device.type for p in policy.parameters()} == {"meta"}


def test_the_value_loss_reaches_the_shared_trunk(tok):
    """Catches a value head fed a detached hidden state: the trunk is shared, so the value loss
    must train the transformer too, not only the last linear layer."""
    policy = PolicyWithValueHead(toy_lm(tok))
    with torch.no_grad():
        policy.value_head.weight.normal_(generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    _, values, _ = policy.logprobs_and_values(ids, torch.ones_like(ids), 2)
    values.pow(2).sum().backward()
    grad = policy.lm.transformer.h[0].mlp.c_fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0


# --------------------------------------------------------------------------- rlhf.evaluation


def test_opening_prompts_checks_its_word_counts():
    """Catches the range check on min_words/max_words loosened (min_words=0 accepted and an
    empty prompt possible; min == max refused; max < min reaching numpy's unnamed error) and the
    error for texts that are all too short dropped (an empty prompt list returned)."""
    texts = ["one two three four five six", "a b c d e", "x y z w"]
    with pytest.raises(ValueError, match="need 1 <= min_words <= max_words, got 0, 4"):
        opening_prompts(texts, min_words=0)
    with pytest.raises(ValueError, match="need 1 <= min_words <= max_words, got 3, 2"):
        opening_prompts(texts, min_words=3, max_words=2)
    assert [len(p.split()) for p in opening_prompts(texts, min_words=3, max_words=3)] == [3, 3, 3]
    with pytest.raises(ValueError, match="no text is long enough to cut an opening from"):
        opening_prompts(["one two", "a", "x y"])


def test_distinct_n_counts_n_grams_of_the_n_asked_for():
    """Catches distinct_n counting bigrams whatever ``n`` is, returning 0 instead of NaN when
    there is no n-gram at all, and taking ``n=True`` for 1."""
    assert distinct_n(["a b a b"], n=1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b a"], n=3) == pytest.approx(2 / 3)
    assert math.isnan(distinct_n(["one", "two"]))  # single words: no bigram to count
    with pytest.raises(ValueError, match="n must be an integer >= 1, got True"):
        distinct_n(["a b c"], n=True)


def test_evaluate_policy_without_bos_at_a_temperature_measures_fluency_at_temperature_one(tok):
    """Catches ``add_bos`` not passed on to encode_prompts (a BOS added anyway), and the
    reference's NLL computed from the tempered logits: fluency is the reference model's own
    log-likelihood, while the KL compares the tempered distributions."""
    policy, reference = eos_prone_lm(tok), frozen_reference(toy_lm(tok, seed=1))
    result = evaluate_policy(policy, reference, tok, PROMPTS, zeros_fn, max_new_tokens=6, seed=5,
                             temperature=0.7, add_bos=False)
    q, qm = encode_prompts(tok, PROMPTS, context_length_of(policy), 6, "cpu", add_bos=False)
    gen = generate(policy, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 0.7, torch.Generator().manual_seed(5))
    assert result.responses == tok.batch_decode(gen.response_ids, skip_special_tokens=True)
    mask = gen.response_mask.float()
    with torch.no_grad():
        ref_logits = lm_forward(reference, gen.input_ids, gen.attention_mask, gen.query_length)[0]
    token_lp = ref_logits.log_softmax(-1).gather(-1, gen.response_ids.unsqueeze(-1)).squeeze(-1)
    nll = (-(token_lp * mask).sum(1) / mask.sum(1)).mean().item()
    assert result.ref_nll == pytest.approx(nll, rel=1e-5)
    tempered = (ref_logits / 0.7).log_softmax(-1).gather(-1, gen.response_ids.unsqueeze(-1)).squeeze(-1)
    assert result.ref_nll != pytest.approx((-(tempered * mask).sum(1) / mask.sum(1)).mean().item(), rel=1e-3)


def test_evaluate_policy_refuses_bad_scores_and_gives_back_the_mode_when_a_prompt_fails(tok):
    """Catches the reward and judge outputs taken unchecked (NaN, wrong length), a too-long
    prompt no longer named by encode_prompts' message (max_new_tokens not passed to it), and the
    caller's train mode not restored when the evaluation raises."""
    lm = toy_lm(tok).train()
    ref = frozen_reference(lm)
    with pytest.raises(ValueError, match="reward_fn returned nan"):
        evaluate_policy(lm, ref, tok, PROMPTS[:2], lambda t: torch.full((len(t),), float("nan")), max_new_tokens=3)
    with pytest.raises(ValueError, match=r"judge_fn returned shape \(1,\) for 2 texts"):
        evaluate_policy(lm, ref, tok, PROMPTS[:2], zeros_fn, lambda t: [0.0], max_new_tokens=3)
    with pytest.raises(ValueError, match="prompt 1 has .* tokens; with max_new_tokens=10"):
        evaluate_policy(lm, ref, tok, ["the movie", too_long_prompt(tok)], zeros_fn, max_new_tokens=10)
    assert lm.training


def test_evaluate_policy_builds_no_autograd_graph(tok):
    """Catches evaluate_policy losing its ``torch.no_grad()``: the policy's forward pass would
    then keep a graph of the (B, R, vocab) logits alive for every chunk until it returns."""
    lm = toy_lm(tok)
    grad_enabled = []
    lm.register_forward_hook(lambda module, args, out: grad_enabled.append(torch.is_grad_enabled()))
    evaluate_policy(lm, frozen_reference(lm), tok, PROMPTS[:3], zeros_fn, max_new_tokens=3)
    assert grad_enabled and not any(grad_enabled)


# --------------------------------------------------------------------------- rlhf.best_of_n


def test_best_of_n_takes_numpy_integers_and_reports_plain_ints():
    """Catches ``n`` restricted to Python ints (a numpy integer, as from np.arange, refused) and
    the curve's rows keeping numpy integers, which json (the benchmarks' output) cannot write."""
    assert best_of_n_kl(np.int64(4)) == pytest.approx(math.log(4) - 3 / 4)
    rows = best_of_n_curve(np.arange(8.0).reshape(4, 2), ns=np.arange(1, 5))
    assert [r["n"] for r in rows] == [1, 2, 3, 4] and all(type(r["n"]) is int for r in rows)
    json.dumps(rows)


def test_best_of_n_weights_do_not_overflow_for_many_samples():
    """Catches the normaliser C(N, n) dropped from the log-weights: w / w.sum() gives the same
    answer for small N, but C(2047, 1023) overflows float64 and every weight turns NaN."""
    w = best_of_n_weights(2048, 1024)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)
    assert w[-1] == pytest.approx(1024 / 2048)  # the top sample is the best of a random half w.p. n/N


def test_best_of_n_curve_refuses_empty_or_mismatched_or_nan_input():
    """Catches the checks for no samples or no prompts, for a judge with a different number of
    samples than the scores (take_along_axis would silently read the wrong rows), and for a NaN
    in the judge being dropped."""
    for empty in (np.zeros((0, 3)), np.zeros((3, 0))):
        with pytest.raises(ValueError, match=r"scores must have shape \(samples per prompt, prompts\)"):
            best_of_n_curve(empty)
    with pytest.raises(ValueError, match="judge has shape"):
        best_of_n_curve(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="judge contains NaN or inf"):
        best_of_n_curve(np.zeros((2, 1)), np.array([[0.0], [np.nan]]))


def test_sample_and_score_samples_as_generate_does(tok):
    """Recomputes the texts by hand with an EOS-prone LM at temperature 0.7 without BOS. Catches
    the temperature or ``add_bos`` not passed on, special tokens left in the decoded texts,
    scores stored in an integer array (fractions lost), a judge array returned when no judge
    was given, and the caller's eval mode not given back (the model left in train mode)."""
    lm = eos_prone_lm(tok)
    seen = []

    def reward_fn(texts):
        seen.extend(texts)
        return torch.tensor([len(t) / 7 for t in texts])

    scores, judged = sample_and_score(lm, tok, PROMPTS, reward_fn, num_samples=3, max_new_tokens=6,
                                      temperature=0.7, seed=4, batch_size=2, add_bos=False)
    assert judged is None
    assert not lm.training
    generator, expected, expected_scores = torch.Generator().manual_seed(4), [], np.zeros((3, 5))
    for start in (0, 2, 4):
        chunk = PROMPTS[start:start + 2]
        q, qm = encode_prompts(tok, chunk, context_length_of(lm), 6, "cpu", add_bos=False)
        for i in range(3):
            gen = generate(lm, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 0.7, generator)
            texts = [p + r for p, r in zip(chunk, tok.batch_decode(gen.response_ids, skip_special_tokens=True))]
            expected += texts
            expected_scores[i, start:start + len(chunk)] = [len(t) / 7 for t in texts]
    assert seen == expected
    assert not any("<|" in t for t in seen)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    assert (scores % 1 != 0).any()  # fractional scores survive


def test_sample_and_score_names_a_prompt_too_long_for_max_new_tokens(tok):
    """Catches max_new_tokens not passed to encode_prompts: the prompt would get past it and fail
    later in generate, with a message that names neither the prompt nor max_new_tokens."""
    with pytest.raises(ValueError, match="prompt 0 has .* tokens; with max_new_tokens=10"):
        sample_and_score(toy_lm(tok), tok, [too_long_prompt(tok)], zeros_fn, num_samples=1, max_new_tokens=10)


# --------------------------------------------------------------------------- rlhf.memory


@pytest.mark.parametrize("name", ["n_layer", "n_head", "response_length"])
def test_memory_estimate_refuses_a_zero_count(name):
    """Catches a count dropped from the validation loop (0 layers gave a total of weights alone)."""
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
        estimate_ppo_memory(**{name: 0})


def test_memory_estimate_counts_the_reward_model_in_bytes():
    """Catches the reward model row counted in parameters instead of fp32 bytes, and a negative
    parameter count accepted."""
    rows = dict(estimate_ppo_memory(reward_model_params=1_000_000))
    assert rows["reward model weights"] == pytest.approx(4_000_000 / GiB)
    assert rows["total"] == pytest.approx(dict(estimate_ppo_memory())["total"] + 4_000_000 / GiB)
    with pytest.raises(ValueError, match="reward_model_params must be an integer >= 0, got -1"):
        estimate_ppo_memory(reward_model_params=-1)


# --------------------------------------------------------------------------- rlhf.toy


def test_toy_tokenizer_and_lm_have_the_documented_layout(tok):
    """Pins what other tests rely on: BOS = EOS = id 0 and a distinct pad = id 1 trained into the
    vocabulary (not appended after it), 300 entries, a 2-layer LM of 37,120 parameters whose
    config carries the tokenizer's special ids (GPT2Config's defaults are 50256, out of range)."""
    assert len(tok) == 300
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 0, 1)
    assert tok.convert_ids_to_tokens([0, 1]) == ["<|endoftext|>", "<|pad|>"]
    lm = toy_lm(tok)
    assert sum(p.numel() for p in lm.parameters()) == 37_120
    assert (lm.config.bos_token_id, lm.config.eos_token_id, lm.config.pad_token_id) == (0, 0, 1)
    assert toy_lm(tok, n_positions=32).config.n_positions == 32


def test_toy_models_are_seeded_and_in_eval_mode(tok):
    """Catches toy_lm / toy_reward_model / eos_prone_lm not seeding their initialisation (or
    eos_prone_lm ignoring its seed), and a reward model left in train mode (dropout on)."""
    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert same(toy_lm(tok, seed=3), toy_lm(tok, seed=3)) and not same(toy_lm(tok, seed=3), toy_lm(tok, seed=4))
    assert same(toy_reward_model(tok), toy_reward_model(tok))
    assert not same(toy_reward_model(tok, seed=2), toy_reward_model(tok, seed=3))
    a, b = eos_prone_lm(tok, seed=3), toy_lm(tok, seed=3)
    assert torch.equal(a.transformer.h[0].attn.c_attn.weight, b.transformer.h[0].attn.c_attn.weight)
    assert not toy_reward_model(tok).training


def test_toy_reward_model_is_scored_by_reward_model_scores(tok):
    """Catches toy_config not setting pad_token_id: reward_model_scores refuses such a model,
    and GPT-2's classifier could not find the last real token of a padded batch."""
    from ppo_edu.lm.reward import reward_model_scores

    rm = toy_reward_model(tok)
    texts = ["a good movie indeed", "bad"]
    with torch.no_grad():
        batch = reward_model_scores(rm, tok, texts)
        alone = torch.cat([reward_model_scores(rm, tok, [t]) for t in texts])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_eos_prone_lm_reads_a_biased_hidden_dimension_for_eos_only(tok):
    """Catches the LM head left tied to the input embeddings, other tokens still reading the
    biased dimension 0, the EOS row keeping its random weights, ``strength`` ignored, and the
    config kwargs not passed on."""
    lm = eos_prone_lm(tok, strength=2.0)
    head = lm.lm_head.weight
    assert head.data_ptr() != lm.transformer.wte.weight.data_ptr()
    eos_row = torch.zeros(head.shape[1])
    eos_row[0] = 2.0
    assert torch.equal(head[tok.eos_token_id], eos_row)
    others = torch.ones(head.shape[0], dtype=torch.bool)
    others[tok.eos_token_id] = False
    assert not head[others, 0].any()
    assert lm.transformer.ln_f.bias[0] == 3.0
    assert eos_prone_lm(tok, n_positions=32).config.n_positions == 32
