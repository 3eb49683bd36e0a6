"""``benchmarks/distill_best_of_n.py``: best-of-n picks, the response likelihood it trains on,
and the script end to end on the shipped tiny models with a handful of prompts."""


import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("distill_best_of_n.py")


@pytest.fixture(scope="module")
def tiny():
    from ppo_edu.lm import load_lm

    return load_lm("tiny", "cpu")


def _length_reward(texts):
    return torch.tensor([float(len(t)) for t in texts])


def test_the_chosen_response_is_the_best_of_the_n_sampled(bench, tiny):
    lm, tokenizer = tiny
    prompts = ["The film", "A dull and", "Funny"]
    one, (first_1, chosen_1) = bench.best_responses(lm, tokenizer, prompts, _length_reward, 1, 8, seed=0)
    eight, (first_8, chosen_8) = bench.best_responses(lm, tokenizer, prompts, _length_reward, 8, 8, seed=0)
    assert chosen_1 == first_1  # best of one is the sample itself
    assert first_8 == first_1  # same seed: the first of the eight samples is that sample
    assert chosen_8 > chosen_1
    for (_, first_response), (_, best_response) in zip(one, eight):  # prompt by prompt, too
        length = [len(tokenizer.decode(r, skip_special_tokens=True)) for r in (first_response, best_response)]
        assert length[1] >= length[0]
    for (query, response), prompt in zip(eight, prompts):
        assert tokenizer.decode(query) == tokenizer.bos_token + prompt  # BOS, then the prompt, no padding
        assert 1 <= len(response) <= 8
        assert tokenizer.pad_token_id not in response or tokenizer.pad_token_id == tokenizer.eos_token_id


def test_response_nll_scores_each_response_token_given_everything_before_it(bench, tiny):
    lm, tokenizer = tiny
    pairs = [([tokenizer.bos_token_id, 40, 41, 42], [50, 51]), ([tokenizer.bos_token_id, 60], [70, 71, 72])]
    with torch.no_grad():
        batched = bench.response_nll(lm, pairs, tokenizer.pad_token_id)
        total, count = 0.0, 0
        for query, response in pairs:  # one unpadded sequence at a time
            ids = torch.tensor([query + response])
            logp = torch.log_softmax(lm(ids).logits[0].float(), -1)
            for i, token in enumerate(response):
                total -= logp[len(query) - 1 + i, token].item()  # the logit before the token predicts it
                count += 1
    assert batched.item() == pytest.approx(total / count, abs=1e-4)


def test_prints_a_table_in_which_distillation_lowers_the_loss_and_moves_the_policy(bench, capsys):
    assert bench.main(["--n", "4", "--epochs", "3", "--train-prompts", "48", "--eval-prompts", "16",
                       "--max-new-tokens", "8", "--lr", "3e-4"]) == 0
    out = capsys.readouterr().out
    assert "48 training prompts, 16 evaluation prompts (seed 0), best of 4" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in {"1", "2", "3"}]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    losses, kls = [float(r[1]) for r in rows], [float(r[4]) for r in rows]
    assert losses[0] > losses[1] > losses[2]  # it fits the chosen responses
    assert 0 < kls[0] < kls[2]  # and moves away from the reference as it does
    assert "reference std above a single sample" in out


@pytest.mark.parametrize("flag, value, message", [
    ("--n", "0", "--n must be >= 1"), ("--epochs", "0", "--epochs must be >= 1"), ("--lr", "0", "--lr must be > 0"),
])
def test_refuses_settings_that_would_do_nothing(bench, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        bench.main([flag, value])
    assert exc.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err  # not any usage error, e.g. a renamed flag
