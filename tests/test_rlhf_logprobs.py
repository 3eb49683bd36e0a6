"""Log-probs and values line up with the tokens they belong to (the off-by-one row of
COURSE.md §8, caught by the ARENA RLHF tests)."""

import pytest
import torch

from ppo_edu.rlhf.logprobs import (
    entropy_from_logits,
    logprobs_from_logits,
    position_ids_from_mask,
    response_logprobs,
)
from ppo_edu.rlhf.policy import PolicyWithValueHead, frozen_reference
from ppo_edu.rlhf.toy import toy_lm


def test_position_ids_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_response_logprobs_are_those_of_next_token_prediction(tok):
    """log p(y_t | x, y_<t) computed one prefix at a time equals the batched slice."""
    lm = toy_lm(tok)
    query = tok("the movie", add_special_tokens=False)["input_ids"]
    response = tok(" was wonderful", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([query + response])
    batched = response_logprobs(lm, ids, torch.ones_like(ids), len(query))[0]
    one_by_one = []
    for t, token in enumerate(response):
        prefix = torch.tensor([query + response[:t]])
        with torch.no_grad():
            logits = lm(prefix).logits[0, -1]
        one_by_one.append(torch.log_softmax(logits, -1)[token])
    torch.testing.assert_close(batched, torch.stack(one_by_one), atol=1e-5, rtol=1e-5)


def test_value_of_token_t_sees_only_the_tokens_before_it(tok):
    """V(s_t) is read before y_t: changing y_t leaves V(s_t) alone and moves V(s_{t+1})."""
    policy = PolicyWithValueHead(toy_lm(tok))
    torch.nn.init.normal_(policy.value_head.weight)  # it starts at 0, which would hide everything
    query = tok("the movie", add_special_tokens=False)["input_ids"]
    a = torch.tensor([query + [40, 41, 42, 43]])
    b = a.clone()
    b[0, len(query) + 2] = 99  # change response token 2
    with torch.no_grad():
        _, va, _ = policy.logprobs_and_values(a, torch.ones_like(a), len(query))
        _, vb, _ = policy.logprobs_and_values(b, torch.ones_like(b), len(query))
    torch.testing.assert_close(va[0, :3], vb[0, :3])  # V(s_0), V(s_1), V(s_2) unchanged
    assert not torch.allclose(va[0, 3], vb[0, 3])  # V(s_3) saw the change


def test_policy_logprobs_match_the_plain_lm(tok):
    lm = toy_lm(tok)
    policy = PolicyWithValueHead(lm)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    lp, values, logits = policy.logprobs_and_values(ids, torch.ones_like(ids), 2)
    torch.testing.assert_close(lp, response_logprobs(lm, ids, torch.ones_like(ids), 2))
    assert values.shape == lp.shape == (1, 4) and logits.shape == (1, 4, len(tok))


def test_temperature_divides_the_logits():
    logits = torch.randn(2, 3, 7)
    tokens = torch.randint(0, 7, (2, 3))
    expected = torch.log_softmax(logits / 0.5, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, tokens, temperature=0.5), expected)


def test_entropy_of_uniform_logits_is_log_vocab():
    h = entropy_from_logits(torch.zeros(1, 2, 16))
    torch.testing.assert_close(h, torch.full((1, 2), float(torch.log(torch.tensor(16.0)))))


def test_misaligned_logits_and_tokens_are_rejected():
    with pytest.raises(ValueError, match="do not line up"):
        logprobs_from_logits(torch.randn(2, 4, 7), torch.zeros(2, 3, dtype=torch.long))


def test_reference_is_frozen_and_equal_to_the_policy_at_the_start(tok):
    policy = PolicyWithValueHead(toy_lm(tok))
    ref = frozen_reference(policy)
    assert not any(p.requires_grad for p in ref.parameters())
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(response_logprobs(ref, ids, torch.ones_like(ids), 2),
                               response_logprobs(policy.lm, ids, torch.ones_like(ids), 2))


def test_policy_round_trips_through_a_local_directory(tok, tmp_path):
    """The Colab path loads `gpt2` with from_pretrained; a local directory takes the same call."""
    policy = PolicyWithValueHead(toy_lm(tok))
    with torch.no_grad():  # the head starts at zero: give it weights a lost head would not have
        policy.value_head.bias.fill_(0.25)
        policy.value_head.weight.copy_(torch.randn(policy.value_head.weight.shape,
                                                   generator=torch.Generator().manual_seed(0)))
    policy.save_pretrained(tmp_path)
    loaded = PolicyWithValueHead.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(policy.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.tensor([[5, 6, 7, 8]])
    a = policy.logprobs_and_values(ids, torch.ones_like(ids), 2)
    b = loaded.logprobs_and_values(ids, torch.ones_like(ids), 2)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_entropy_takes_the_temperature_into_account():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(entropy_from_logits(logits, 2.0), entropy_from_logits(logits / 2.0))
    assert not torch.allclose(entropy_from_logits(logits, 2.0), entropy_from_logits(logits))


def test_a_call_with_no_response_or_no_query_is_refused(tok):
    from ppo_edu.rlhf.logprobs import lm_forward, response_slice

    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="no response tokens"):
        lm_forward(toy_lm(tok), ids, torch.ones_like(ids), 3)
    with pytest.raises(ValueError, match="the query needs at least one token"):
        response_slice(0, 3)  # it would be slice(-1, 2)


def test_a_query_mask_that_is_not_zeros_and_ones_is_refused():
    from ppo_edu.rlhf.logprobs import require_left_padded

    with pytest.raises(ValueError, match="must hold only 0 .padding. and 1 .real token."):
        require_left_padded(torch.tensor([[0, 2]]))


def test_the_model_gets_the_attention_mask_and_the_position_ids(tok):
    # Without the mask, transformers 5.x happens to isolate the real tokens from left padding
    # by reading the position ids as packed sequences; older versions let the pads leak in.
    # Pass both explicitly, whatever the installed version does without them.
    from ppo_edu.rlhf.logprobs import lm_forward

    lm = toy_lm(tok)
    seen = {}
    forward = lm.forward

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    lm.forward = recording
    ids = torch.tensor([[0, 5, 6, 7], [4, 5, 6, 7]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    lm_forward(lm, ids, mask, 2)
    assert torch.equal(seen["attention_mask"], mask)
    assert seen["position_ids"].tolist() == [[0, 0, 1, 2], [0, 1, 2, 3]]
