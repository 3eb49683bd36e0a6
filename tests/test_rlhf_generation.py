"""Batched generation: left padding, EOS handling, bad input (COURSE.md §8 rows on
padding and EOS: TRL #469, #2778, #1482, #2387, #3750, PR #5303)."""

import pytest
import torch

from ppo_edu.rlhf.generation import encode_prompts, generate, response_mask_from_eos
from ppo_edu.rlhf.logprobs import response_logprobs
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_tokenizer


def test_prompts_are_padded_on_the_left(tok):
    ids, mask = encode_prompts(tok, ["the movie was great", "a"], context_length=64, max_new_tokens=4)
    assert mask[1, -1] == 1 and mask[1, 0] == 0
    assert (ids[1][mask[1] == 0] == tok.pad_token_id).all()
    assert ids[0, -1].item() == tok("the movie was great")["input_ids"][-1]


def test_logprobs_of_a_response_do_not_depend_on_the_padding_of_its_batch(tok, lm):
    """The same prompt + response, alone or next to a much longer prompt, same log-probs."""
    alone = encode_prompts(tok, ["a film"], 64, 8)
    padded = encode_prompts(tok, ["the movie was great and the acting was wonderful", "a film"], 64, 8)
    assert padded[1][1, 0] == 0, "the short prompt must be padded for this test"
    g = generate(lm, *padded, 8, tok.eos_token_id, tok.pad_token_id,
                 generator=torch.Generator().manual_seed(3))
    # sampling draws random numbers for every row, so compare log-probs, not tokens:
    # the short prompt's response scored inside the padded batch and scored alone
    n = int(g.response_mask[1].sum())
    seq_alone = torch.cat([alone[0], g.response_ids[1:2, :n]], 1)
    lp_alone = response_logprobs(lm, seq_alone, torch.ones_like(seq_alone), alone[0].shape[1])
    lp_padded = response_logprobs(lm, g.input_ids, g.attention_mask, g.query_length)[1:2, :n]
    torch.testing.assert_close(lp_alone, lp_padded, atol=1e-5, rtol=1e-5)


def test_logprobs_are_the_same_with_left_padding_or_none(tok, lm):
    """Without position ids from the mask, left padding shifts positions (TRL #469)."""
    q = tok("the movie", add_special_tokens=False)["input_ids"]
    r = tok(" was great", add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id
    left = torch.tensor([[pad, pad, pad] + q + r])
    left_mask = torch.tensor([[0, 0, 0] + [1] * (len(q) + len(r))])
    plain = torch.tensor([q + r])
    lp_left = response_logprobs(lm, left, left_mask, 3 + len(q))
    lp_plain = response_logprobs(lm, plain, torch.ones_like(plain), len(q))
    torch.testing.assert_close(lp_left, lp_plain, atol=1e-5, rtol=1e-5)
    # and the bug, for contrast: a forward call without position ids gets it wrong
    out = lm(input_ids=left, attention_mask=left_mask)
    logp = torch.log_softmax(out.logits[:, 3 + len(q) - 1:-1], -1)
    lp_buggy = logp.gather(-1, left[:, 3 + len(q):].unsqueeze(-1)).squeeze(-1)
    assert not torch.allclose(lp_buggy, lp_plain, atol=1e-3)


@pytest.mark.parametrize("query_mask, problem", [
    ([[1, 1, 1, 0]], "row 0 ends on padding"),                       # right padding
    ([[0, 1, 0, 1]], "row 0 has padding at position 2 after a real token"),  # a hole
    ([[1, 1, 1, 1], [1, 1, 0, 0]], "row 1 ends on padding"),
])
def test_prompts_not_padded_on_the_left_are_rejected(tok, lm, query_mask, problem):
    """Right padding would predict the first response token from a pad position, and its
    log-probs differ from the left-padded ones (no error would say so); refuse it."""
    query_mask = torch.tensor(query_mask)
    query_ids = torch.full(query_mask.shape, 7)
    with pytest.raises(ValueError, match=f"{problem}: prompts must be padded on the left"):
        generate(lm, query_ids, query_mask, 4, tok.eos_token_id, tok.pad_token_id)
    ids = torch.cat([query_ids, torch.full((len(query_ids), 3), 8)], 1)
    mask = torch.cat([query_mask, torch.ones(len(query_ids), 3, dtype=torch.long)], 1)
    with pytest.raises(ValueError, match=f"attention_mask over the query {problem}"):
        response_logprobs(lm, ids, mask, query_length=4)


def test_generate_refuses_left_padded_ids_with_a_mask_that_does_not_mark_the_padding(tok, lm):
    """An all-ones mask over left-padded ids is left padded in form only: the pads are read
    as text, and nothing downstream can tell. Refused when the pad id is neither the EOS nor
    the model's BOS (otherwise a leading one under mask 1 is add_bos's BOS), and only for the
    pads that open a row (inside the text a pad id can be a tokenizer's unk)."""
    q, qm = encode_prompts(tok, ["the movie was great", "a"], 64, 4)
    assert q[1, 0] == tok.pad_token_id != tok.eos_token_id
    with pytest.raises(ValueError, match=f"query_ids row 1 opens with the pad token "
                                         f"\\(id {tok.pad_token_id}\\) at position 0, where query_mask is 1"):
        generate(lm, q, torch.ones_like(qm), 4, tok.eos_token_id, tok.pad_token_id)
    one, _ = encode_prompts(tok, ["the movie"], 64, 4)
    pad_inside = torch.cat([one[:, :1], torch.tensor([[tok.pad_token_id]]), one[:, 1:]], 1)
    g = generate(lm, pad_inside, torch.ones_like(pad_inside), 4, tok.eos_token_id, tok.pad_token_id,
                 generator=torch.Generator().manual_seed(0))
    assert 1 <= g.response_mask.sum() <= 4
    bos = lm.config.bos_token_id
    try:
        for model_bos, pad in ((tok.eos_token_id + 1, tok.eos_token_id),  # pad == eos (GPT-2)
                               (tok.pad_token_id, tok.pad_token_id)):     # the model's BOS is the pad
            lm.config.bos_token_id = model_bos
            pad_first = torch.cat([torch.tensor([[pad]]), one], 1)
            g = generate(lm, pad_first, torch.ones_like(pad_first), 4, tok.eos_token_id, pad,
                         generator=torch.Generator().manual_seed(0))
            assert g.query_mask.all() and 1 <= g.response_mask.sum() <= 4
    finally:
        lm.config.bos_token_id = bos


def test_generate_names_the_value_head_wrapper(tok):
    from ppo_edu.rlhf.policy import PolicyWithValueHead

    q, qm = encode_prompts(tok, ["the movie"], 64, 4)
    with pytest.raises(TypeError, match="got a PolicyWithValueHead: pass its .lm"):
        generate(PolicyWithValueHead(toy_lm(tok)), q, qm, 4, tok.eos_token_id, tok.pad_token_id)


def test_generate_refuses_mismatched_masks_and_zero_new_tokens(tok, lm):
    q, qm = encode_prompts(tok, ["the movie"], 64, 4)
    with pytest.raises(ValueError, match="shape mismatch: query_mask"):
        generate(lm, q, qm[:, 1:], 4, tok.eos_token_id, tok.pad_token_id)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1, got 0"):
        generate(lm, q, qm, 0, tok.eos_token_id, tok.pad_token_id)
    for temperature in (0.0, float("inf"), float("nan")):  # inf would sample uniformly, silently
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            generate(lm, q, qm, 4, tok.eos_token_id, tok.pad_token_id, temperature=temperature)


def test_cached_generation_follows_the_full_forward_pass_of_padded_prompts(tok):
    """Near-greedy sampling (tiny temperature) picks, at every step, the argmax of a
    fresh forward pass over the whole padded sequence: the KV-cache steps see the same
    positions and masks as the forward pass PPO trains with."""
    lm = toy_lm(tok, seed=5)
    q, qm = encode_prompts(tok, ["the movie was great and the acting was wonderful", "a", "not bad"], 64, 10)
    g = generate(lm, q, qm, 10, tok.eos_token_id, tok.pad_token_id, temperature=1e-6)
    from ppo_edu.rlhf.logprobs import lm_forward
    logits, _ = lm_forward(lm, g.input_ids, g.attention_mask, g.query_length)
    greedy = logits.argmax(-1)
    real = g.response_mask.bool()
    assert torch.equal(greedy[real], g.response_ids[real]), (
        "cached generation picked other tokens than a full forward pass: its position ids or "
        "attention mask differ from the ones PPO trains with (left padding, TRL #469)")


def test_cached_steps_sample_from_the_distribution_ppo_scores(tok):
    """At temperature 1, every cached generation step samples from exactly the distribution
    that PPO's full forward pass assigns to that token: the whole distribution, not only its
    argmax (a cached step that attended to the left padding moved the log-probs by 0.15 nats
    and kept most argmaxes, so the test above could not see it)."""
    from ppo_edu.rlhf.logprobs import lm_forward

    lm = toy_lm(tok, seed=5)
    q, qm = encode_prompts(tok, ["the movie was great and the acting was wonderful", "a", "not bad"], 64, 10)
    seen = []
    hook = lm.register_forward_hook(lambda module, args, out: seen.append(out.logits[:, -1].detach().clone()))
    try:
        g = generate(lm, q, qm, 10, tok.eos_token_id, tok.pad_token_id,
                     generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    with torch.no_grad():
        logits, _ = lm_forward(lm, g.input_ids, g.attention_mask, g.query_length)
    sampled_from = torch.stack(seen[:logits.shape[1]], 1).log_softmax(-1)
    real = g.response_mask.bool()
    assert (qm == 0).any() and real.sum() >= 20  # left-padded prompts, and many tokens to compare
    torch.testing.assert_close(sampled_from[real], logits.log_softmax(-1)[real], atol=1e-4, rtol=0)


def test_response_mask_ends_at_the_first_eos_and_keeps_it():
    eos = 0
    ids = torch.tensor([[5, 6, eos, 7, eos], [5, 6, 7, 8, 9], [eos, 3, 3, 3, 3]])
    mask = response_mask_from_eos(ids, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_generated_responses_are_padded_after_eos(tok, lm):
    q, qm = encode_prompts(tok, ["the movie"] * 64, 64, 12)
    g = generate(eos_prone_lm(tok), q, qm, 12, tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    lengths = g.response_mask.sum(1)
    assert (lengths < g.response_ids.shape[1]).any(), "no row stopped early: the test needs one"
    for row, n in zip(g.response_ids, lengths):
        if n < len(row):
            assert row[n - 1] == tok.eos_token_id  # the EOS is the last real token
            assert (row[n:] == tok.pad_token_id).all()
    assert (g.last_index == lengths - 1).all()


def test_pad_equal_to_eos_does_not_mask_the_real_eos():
    """With pad == eos, masking by `ids != pad` drops the real EOS (a review of TRL PR #5303)."""
    tok = toy_tokenizer(pad_token=None)
    tok.pad_token = tok.eos_token
    eos = tok.eos_token_id
    q, qm = encode_prompts(tok, ["the movie", "a", "i loved", "not bad"], 64, 10)
    g = generate(eos_prone_lm(tok), q, qm, 10, eos, tok.pad_token_id,
                 generator=torch.Generator().manual_seed(1))
    stopped = [i for i in range(4) if (g.response_ids[i] == eos).any()]
    assert stopped, "no row produced EOS"
    for i in stopped:
        first = int((g.response_ids[i] == eos).nonzero()[0])
        assert g.response_mask[i, first] == 1, "the real EOS was masked out"
        assert g.response_mask[i, first + 1:].sum() == 0


def test_nan_logits_raise_a_clear_error(tok):
    lm = toy_lm(tok)
    with torch.no_grad():
        lm.lm_head.weight[3, 0] = float("nan")
    q, qm = encode_prompts(tok, ["the movie"], 64, 4)
    with pytest.raises(FloatingPointError, match="NaN/inf at generation step 0"):
        generate(lm, q, qm, 4, tok.eos_token_id, tok.pad_token_id)


def test_a_prompt_longer_than_the_context_is_rejected(tok):
    long_prompt = "the movie was great and the acting was wonderful " * 20
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens.*context of 64"):
        encode_prompts(tok, ["a", long_prompt], context_length=64, max_new_tokens=8)


def test_an_empty_prompt_list_is_rejected(tok):
    with pytest.raises(ValueError, match="prompts is empty"):
        encode_prompts(tok, [], 64, 8)


def test_an_empty_prompt_is_rejected(tok):
    with pytest.raises(ValueError, match="prompt 1 .* has no tokens"):
        encode_prompts(tok, ["a", ""], 64, 8)


def test_a_single_string_is_not_taken_for_a_list_of_prompts(tok):
    with pytest.raises(TypeError, match="list of strings"):
        encode_prompts(tok, "the movie", 64, 8)


def test_a_tokenizer_without_pad_token_is_rejected():
    tok = toy_tokenizer(pad_token=None)
    with pytest.raises(ValueError, match="the tokenizer has no pad token"):
        encode_prompts(tok, ["the movie"], 64, 8)


def test_add_bos_puts_the_document_separator_before_each_prompt(tok):
    ids, mask = encode_prompts(tok, ["the movie", "a"], 64, 4, add_bos=True)
    for row, m in zip(ids, mask):
        first_real = int(m.nonzero()[0])
        assert row[first_real] == tok.bos_token_id


def test_generation_passes_the_kv_cache_under_the_name_the_installed_transformers_takes(tok, lm):
    """transformers 5.24 renamed forward's ``past_key_values`` to ``cache`` and drops the old
    name in 5.40: generation must not lean on the deprecated one (nor break on older ones)."""
    import warnings

    ids, mask = encode_prompts(tok, ["the movie was great", "a"], 64, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = generate(lm, ids, mask, 6, tok.eos_token_id, tok.pad_token_id,
                     generator=torch.Generator().manual_seed(0))
    assert g.response_ids.shape[0] == 2 and 1 <= g.response_ids.shape[1] <= 6
    deprecated = [str(w.message) for w in caught if "past_key_values" in str(w.message)]
    assert not deprecated, deprecated


def test_cache_argument_and_cache_of_follow_either_name():
    from ppo_edu.rlhf.generation import cache_argument, cache_of

    class New(torch.nn.Module):
        def forward(self, input_ids, cache=None, use_cache=False):
            pass

    class Old(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None, use_cache=False):
            pass

    assert cache_argument(New()) == "cache" and cache_argument(Old()) == "past_key_values"

    class Out:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    assert cache_of(Out(cache="kv")) == "kv" and cache_of(Out(past_key_values="kv")) == "kv"
    with pytest.raises(ValueError, match="use_cache=True"):
        cache_of(Out(logits=None))


def test_tokens_are_sampled_from_the_tempered_policy_itself():
    """The log-probs PPO uses are those of softmax(logits / T): a top-k or top-p filter, or a
    temperature the log-probs do not know about, samples from another distribution and the
    k1 KL goes negative (TRL #351). Under the right distribution the mean of log p(sampled)
    is minus its entropy; a top-k filter moves it by ~0.4 nats, ~250 standard errors here."""
    tok = toy_tokenizer()
    lm = toy_lm(tok, seed=3)
    n, temperature = 4000, 0.8
    q, qm = encode_prompts(tok, ["the movie"] * n, 64, 1)
    g = generate(lm, q, qm, 1, tok.eos_token_id, tok.pad_token_id, temperature=temperature,
                 generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = lm(input_ids=q[:1], attention_mask=qm[:1]).logits[0, -1].float()
    logp = torch.log_softmax(logits / temperature, -1)
    entropy = -(logp.exp() * logp).sum()
    sampled = logp[g.response_ids[:, 0]]
    standard_error = sampled.std() / n ** 0.5
    assert abs(sampled.mean() + entropy) < 4 * standard_error, (sampled.mean().item(), -entropy.item())


def test_sampled_tokens_follow_the_probabilities_and_never_take_an_impossible_one():
    """The inverse-CDF sampler draws each token at its probability (within 4.5 standard errors
    over 200,000 draws), never one of probability 0, and repeats itself from the same seed."""
    from ppo_edu.rlhf.generation import sample_tokens

    probs = torch.tensor([0.5, 0.0, 0.2, 0.001, 0.0, 0.299, 0.0])
    n = 200_000
    tokens = sample_tokens(probs.expand(n, -1), torch.Generator().manual_seed(0))
    assert tokens.shape == (n,) and tokens.dtype == torch.long
    share = torch.bincount(tokens, minlength=probs.numel()).double() / n
    assert share[probs == 0].sum() == 0
    error = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert ((share - probs.double()).abs() <= 4.5 * error + 1e-12).all(), (share, probs)
    again = sample_tokens(probs.expand(n, -1), torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)
    other = sample_tokens(probs.expand(n, -1), torch.Generator().manual_seed(1))
    assert not torch.equal(tokens, other)
    # rows differ: each row draws from its own distribution; unnormalised rows work too
    rows = torch.tensor([[0.0, 0.0, 3.0], [2.0, 0.0, 0.0]])
    assert sample_tokens(rows, torch.Generator().manual_seed(0)).tolist() == [2, 0]


@pytest.mark.parametrize("uniform, expected", [(0.0, 1), (0.2499, 1), (0.25, 3), (0.9999, 3), (1.0, 3)])
def test_the_inverse_cdf_boundaries(uniform, expected):
    """Token 1 covers [0, 0.25) of the mass and token 3 [0.25, 1); tokens 0, 2 and 4 have none.
    A uniform at the total (float rounding of u times the total) picks the last possible token,
    not the impossible token 4 after it."""
    from ppo_edu.rlhf.generation import inverse_cdf_tokens

    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]])
    assert inverse_cdf_tokens(probs, torch.tensor([uniform])).tolist() == [expected]


def test_a_prompt_that_spells_a_special_token_is_encoded_as_characters(tok):
    # "<|pad|>" typed in a prompt must not become the pad id (the attention mask would then
    # hold a 1 on a pad id) nor "<|endoftext|>" a document boundary in mid-prompt.
    prompts = ["great<|pad|>", "<|endoftext|> so"]
    ids, mask = encode_prompts(tok, prompts, context_length=64, max_new_tokens=4)
    real = ids[mask.bool()]
    assert tok.pad_token_id not in real.tolist() and tok.eos_token_id not in real.tolist()
    for row, m, prompt in zip(ids, mask, prompts):
        assert tok.decode(row[m.bool()]) == prompt


def test_generation_stops_as_soon_as_every_row_has_ended(tok):
    """Once every row has produced its EOS, generation stops: the response tensor is as wide
    as the longest response, not max_new_tokens, and the model is not called again. A row
    must stay finished after its EOS (the steps after it sample a pad, which is not EOS);
    otherwise a batch runs to the limit whenever its rows end at different steps, and every
    rollout pays for max_new_tokens forward passes."""
    lm = eos_prone_lm(tok)
    q, qm = encode_prompts(tok, ["the movie", "a film", "i loved", "not bad"] * 2, 64, 40)
    calls = []
    hook = lm.register_forward_hook(lambda *args: calls.append(1))
    try:
        g = generate(lm, q, qm, 40, tok.eos_token_id, tok.pad_token_id,
                     generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    lengths = g.response_lengths
    assert len(set(lengths.tolist())) > 1, "rows must end at different steps for this test"
    assert g.response_ids.shape[1] == int(lengths.max()) < 40
    for row, n in zip(g.response_ids, lengths):
        assert row[n - 1] == tok.eos_token_id  # every row ended at an EOS, none at the limit
    assert len(calls) == g.response_ids.shape[1]  # the prompt pass, then one per token but the last


def test_a_prompt_that_exactly_fills_the_context_is_accepted_and_one_more_token_is_not(tok):
    """The check is prompt + max_new_tokens <= context_length, at the boundary exactly: a
    prompt of n tokens with k new tokens fits a context of n + k and not one of n + k - 1
    (the last token would fall outside GPT-2's position embeddings)."""
    prompt = "the movie was great"
    n = len(tok(prompt, add_special_tokens=False)["input_ids"]) + 1  # with the BOS
    k = 5
    ids, mask = encode_prompts(tok, [prompt], context_length=n + k, max_new_tokens=k, add_bos=True)
    assert ids.shape == (1, n) and mask.sum() == n
    with pytest.raises(ValueError, match=rf"prompt 0 has {n} tokens; with max_new_tokens={k} that is "
                                         rf"{n + k} > the model's context of {n + k - 1} tokens"):
        encode_prompts(tok, [prompt], context_length=n + k - 1, max_new_tokens=k, add_bos=True)
