"""Potential-based reward shaping: the telescoping sum, the prefix scores against scoring
every prefix on its own, and the trainer's use of them."""

import pytest
import torch

from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf.generation import encode_prompts, generate
from ppo_edu.rlhf.kl import sequence_kl
from ppo_edu.rlhf.shaping import (
    prefix_potentials,
    reward_model_potentials,
    shape_rewards,
    text_prefix_potentials,
)
from ppo_edu.rlhf.toy import eos_prone_lm, toy_tokenizer


def test_shaping_adds_the_potential_differences_and_they_telescope_to_minus_phi_0():
    rewards = torch.tensor([[0.1, 0.2, 1.5, 0.0], [0.3, 2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    phi = torch.tensor([[1.0, 3.0, 2.0, float("nan")], [-1.0, 4.0, 7.0, 7.0]])  # padding: anything
    shaped = shape_rewards(rewards, phi, mask)
    expected = torch.tensor([[0.1 + 2.0, 0.2 - 1.0, 1.5 - 2.0, 0.0], [0.3 + 5.0, 2.0 - 4.0, 0.0, 0.0]])
    torch.testing.assert_close(shaped, expected)
    torch.testing.assert_close((shaped - rewards).sum(1), -phi[:, 0])  # a constant of the prompt


def test_shaping_refuses_a_non_finite_potential_on_a_real_token_and_a_wrong_shape():
    mask = torch.tensor([[1, 1, 0]])
    with pytest.raises(ValueError, match="not finite at response 0, token 1"):
        shape_rewards(torch.zeros(1, 3), torch.tensor([[0.0, float("inf"), 0.0]]), mask)
    with pytest.raises(ValueError, match="shape"):
        shape_rewards(torch.zeros(1, 3), torch.zeros(1, 2), mask)


@pytest.fixture(scope="module")
def tiny():
    from ppo_edu.lm import load_lm, load_reward_model

    lm, tokenizer = load_lm("tiny", "cpu")
    rm, _ = load_reward_model("tiny", "cpu")
    return lm, tokenizer, rm.eval()


def _sample(lm, tokenizer, prompts, max_new_tokens=12, seed=0):
    q, qm = encode_prompts(tokenizer, prompts, 128, max_new_tokens, add_bos=True)
    return generate(lm, q, qm, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, 1.0,
                    torch.Generator().manual_seed(seed))


def test_prefix_potentials_equal_scoring_every_prefix_on_its_own(tiny):
    lm, tokenizer, rm = tiny
    prompts = ["The film", "A dull and", "Funny", "I did not like the"]
    gen = _sample(lm, tokenizer, prompts * 4)
    assert len(set(gen.response_lengths.tolist())) > 1  # rows of different lengths
    phi = prefix_potentials(rm, gen, tokenizer.bos_token_id, tokenizer.eos_token_id)
    eos = tokenizer.eos_token_id
    for b in range(len(gen.response_ids)):
        prompt = gen.query_ids[b][gen.query_mask[b].bool()].tolist()[1:]  # without the BOS
        L = int(gen.response_lengths[b])
        for t in range(L):
            ids = torch.tensor([prompt + gen.response_ids[b, :t].tolist() + [eos]])
            with torch.no_grad():
                alone = rm(input_ids=ids).logits.item()
            assert phi[b, t].item() == pytest.approx(alone, abs=1e-4), (b, t)
        assert (phi[b, L:] == 0).all()


def test_prefix_potentials_of_long_prompts_take_several_passes_and_stay_exact(tiny):
    """Prompt + response fits the context, but not the text plus one EOS per prefix (which
    used to raise "more than the reward model's context" mid-training): the EOS tokens are
    scored in groups, each prefix still exactly as on its own."""
    lm, tokenizer, rm = tiny
    long_prompt = " ".join(["The film was long and the plot was thin"] * 11) + " and slow"  # 101 tokens
    q, qm = encode_prompts(tokenizer, [long_prompt, "Funny"], 128, 20, add_bos=True)
    gen = generate(lm, q, qm, 20, tokenizer.eos_token_id, tokenizer.pad_token_id, 1.0,
                   torch.Generator().manual_seed(22))  # a seed whose long-prompt response runs to 20
    P, L = int(qm[0].sum()) - 1, int(gen.response_lengths[0])  # without the BOS
    assert P + L <= 128 < P + 2 * L - 1, (P, L)  # one pass would not fit
    passes = []
    hook = rm.transformer.register_forward_hook(lambda *args: passes.append(1))
    try:
        phi = prefix_potentials(rm, gen, tokenizer.bos_token_id, tokenizer.eos_token_id)
    finally:
        hook.remove()
    assert len(passes) == 3  # 128 - (101 + 19) = 8 EOS tokens a pass
    eos = tokenizer.eos_token_id
    for b in range(2):
        prompt = gen.query_ids[b][gen.query_mask[b].bool()].tolist()[1:]
        for t in range(int(gen.response_lengths[b])):
            with torch.no_grad():
                alone = rm(input_ids=torch.tensor([prompt + gen.response_ids[b, :t].tolist() + [eos]])).logits.item()
            assert phi[b, t].item() == pytest.approx(alone, abs=1e-4), (b, t)


def test_the_reward_models_potentials_follow_its_score_of_the_text(tiny):
    """The potential of the last prefix is close to the score of the whole response."""
    from ppo_edu.lm import reward_fn_from_model

    lm, tokenizer, rm = tiny
    gen = _sample(lm, tokenizer, ["The film", "Funny", "A dull and", "It is"] * 8, max_new_tokens=16)
    phi = reward_model_potentials(rm, tokenizer)(None, gen)
    texts = [p + r for p, r in zip(["The film", "Funny", "A dull and", "It is"] * 8,
                                   tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True))]
    scores = reward_fn_from_model(rm, tokenizer)(texts)
    last = phi[torch.arange(len(texts)), gen.response_lengths - 1]
    assert torch.corrcoef(torch.stack([last, scores]))[0, 1] > 0.9
    # close in value too, not only in order (the last prefix lacks a cut response's last token,
    # and the texts are tokenised afresh): measured mean gap 0.1 reference std
    assert (last - scores).abs().mean() < 0.25 * scores.std()


def test_reward_model_potentials_need_the_policys_vocabulary_and_a_gpt2_classifier(tiny):
    lm, tokenizer, rm = tiny
    with pytest.raises(ValueError, match="vocabulary"):
        reward_model_potentials(rm, toy_tokenizer())
    gen = _sample(lm, tokenizer, ["The film"])
    with pytest.raises(TypeError, match="GPT-2-style"):
        prefix_potentials(torch.nn.Linear(2, 1), gen, tokenizer.bos_token_id, tokenizer.eos_token_id)


def test_text_prefix_potentials_score_the_decoded_prefixes():
    tok = toy_tokenizer()
    lm = eos_prone_lm(tok)
    q, qm = encode_prompts(tok, ["the movie", "a film"], 64, 6)
    gen = generate(lm, q, qm, 6, tok.eos_token_id, tok.pad_token_id, 1.0, torch.Generator().manual_seed(0))
    phi = text_prefix_potentials(lambda texts: torch.tensor([float(len(t)) for t in texts]), tok,
                                 ["the movie", "a film"], gen)
    for b, prompt in enumerate(["the movie", "a film"]):
        for t in range(int(gen.response_lengths[b])):
            text = prompt + tok.decode(gen.response_ids[b, :t].tolist(), skip_special_tokens=True)
            assert phi[b, t].item() == len(text)
    with pytest.raises(ValueError, match="prefixes"):
        text_prefix_potentials(lambda texts: torch.zeros(1), tok, ["the movie", "a film"], gen)


def _trainer(tok, potential_fn, reward_fn):
    policy = PolicyWithValueHead(eos_prone_lm(tok))
    config = RLHFConfig(batch_size=8, mini_batch_size=4, ppo_epochs=1, max_new_tokens=8, seed=0)
    return RLHFTrainer(policy, frozen_reference(policy), tok, reward_fn,
                       ["the movie", "a film", "i loved", "not bad"], config, potential_fn=potential_fn)


def _vowels(texts):
    return torch.tensor([sum(c in "aeiou" for c in t) / max(len(t), 1) for t in texts])


def test_the_trainer_shapes_its_rewards_and_each_return_moves_by_minus_phi_0():
    tok = toy_tokenizer()

    def potential_fn(prompts, generation):
        return text_prefix_potentials(_vowels, tok, prompts, generation)

    trainer = _trainer(tok, potential_fn, _vowels)
    trainer.train(steps=1, progress=False)  # move away from the reference: a KL that is not 0
    prompts = trainer.next_prompts()
    batch = trainer.rollout(prompts)
    phi = potential_fn(prompts, batch.generation)
    beta = trainer.kl_ctl.value
    expected = batch.scores - beta * sequence_kl(batch.kl, batch.mask) - phi[:, 0]
    torch.testing.assert_close(batch.rewards.sum(1), expected, atol=1e-5, rtol=1e-5)
    assert not torch.equal(phi[:, 0], torch.zeros(8))


def test_the_trainer_refuses_potentials_of_the_wrong_shape():
    tok = toy_tokenizer()
    trainer = _trainer(tok, lambda prompts, generation: torch.zeros(3, 2), _vowels)
    with pytest.raises(ValueError, match="potential_fn returned shape"):
        trainer.step()


@pytest.mark.parametrize("returned, match", [
    (lambda shape: torch.ones(shape, dtype=torch.bool), "bool tensor"),
    (lambda shape: [["high"] * shape[1]] * shape[0], "numbers"),
])
def test_the_trainer_refuses_potentials_that_are_not_numbers(returned, match):
    """Booleans (a `score > 0` test) would silently become 0/1 shaping terms."""
    tok = toy_tokenizer()
    trainer = _trainer(tok, lambda prompts, generation: returned(tuple(generation.response_ids.shape)),
                       _vowels)
    with pytest.raises(TypeError, match=f"potential_fn returned .*{match}"):
        trainer.step()


def test_prefix_potentials_run_in_the_reward_models_own_dtype(tiny):
    import copy

    lm, tokenizer, rm = tiny
    gen = _sample(lm, tokenizer, ["The film", "Funny"])
    full = prefix_potentials(rm, gen, tokenizer.bos_token_id, tokenizer.eos_token_id)
    half = prefix_potentials(copy.deepcopy(rm).to(torch.bfloat16), gen, tokenizer.bos_token_id,
                             tokenizer.eos_token_id)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert torch.allclose(half, full, atol=0.15)  # bfloat16 keeps about 3 significant digits


def test_with_a_discount_the_discounted_shaping_terms_telescope_to_minus_phi_0():
    gamma = 0.9
    mask = torch.tensor([[1, 1, 1, 1]])
    phi = torch.tensor([[0.5, -1.0, 2.0, 3.0]])
    added = shape_rewards(torch.zeros(1, 4), phi, mask, gamma)
    discounted = (added * gamma ** torch.arange(4)).sum()
    assert discounted.item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="gamma"):
        shape_rewards(torch.zeros(1, 4), phi, mask, 0.0)


def test_text_prefix_potentials_need_one_prompt_per_response():
    tok = toy_tokenizer()
    q, qm = encode_prompts(tok, ["the movie", "a film"], 64, 4)
    gen = generate(eos_prone_lm(tok), q, qm, 4, tok.eos_token_id, tok.pad_token_id, 1.0,
                   torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="1 prompts for 2 responses"):
        text_prefix_potentials(lambda texts: torch.zeros(len(texts)), tok, ["the movie"], gen)


def test_reward_model_potentials_drop_the_policys_bos_before_scoring(tiny):
    """The policy's prompts start with BOS (add_bos=True), the reward model's inputs never
    do: the potential_fn must pass the tokenizer's BOS id to prefix_potentials so that it is
    stripped. Scored with the BOS in front, every prefix gets a score of a text the reward
    model never saw in training (and the potentials drift from the final reward)."""
    lm, tokenizer, rm = tiny
    gen = _sample(lm, tokenizer, ["The film", "A dull and"], max_new_tokens=6, seed=1)
    assert (gen.query_ids[gen.query_mask.bool()] == tokenizer.bos_token_id).sum() == 2  # one BOS a prompt
    phi = reward_model_potentials(rm, tokenizer)(None, gen)
    torch.testing.assert_close(phi, prefix_potentials(rm, gen, tokenizer.bos_token_id, tokenizer.eos_token_id),
                               atol=1e-5, rtol=0)
    eos = tokenizer.eos_token_id
    for b in range(2):
        prompt = gen.query_ids[b][gen.query_mask[b].bool()].tolist()[1:]  # without the BOS
        for t in range(int(gen.response_lengths[b])):
            with torch.no_grad():
                alone = rm(input_ids=torch.tensor([prompt + gen.response_ids[b, :t].tolist() + [eos]])).logits.item()
            assert phi[b, t].item() == pytest.approx(alone, abs=1e-4), (b, t)
