"""``benchmarks/rlhf_variants.py``: the banned EOS, the log-sigmoid reward, the weight
averages, and the script end to end on the shipped tiny models with a few steps."""

import copy
import math
import re

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("rlhf_variants.py")


@pytest.fixture()
def tiny():
    from ppo_edu.lm import load_lm

    return load_lm("tiny", "cpu")


def test_a_banned_token_is_never_sampled_and_copies_keep_the_ban(bench, tiny):
    from ppo_edu.rlhf.generation import encode_prompts, generate

    lm, tokenizer = tiny
    eos = tokenizer.eos_token_id
    q, qm = encode_prompts(tokenizer, ["The film"] * 64, 128, 30)
    before = generate(lm, q, qm, 30, eos, tokenizer.pad_token_id, 1.0, torch.Generator().manual_seed(0))
    assert (before.response_lengths < 30).any()  # the SFT model does end responses
    bench.ban_token(lm, eos)
    copied = copy.deepcopy(lm)
    for model in (lm, copied):
        gen = generate(model, q, qm, 30, eos, tokenizer.pad_token_id, 1.0, torch.Generator().manual_seed(0))
        assert (gen.response_lengths == 30).all()
        logits = model(q).logits
        assert torch.isfinite(logits).all() and (logits[..., eos] == -1e4).all()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bench.ban_token(lm, 10**6)


def test_logsigmoid_reward_is_bounded_above_and_linear_far_below_the_mean(bench):
    reward = bench.logsigmoid_reward(lambda texts: torch.tensor([-10.0, 1.0, 30.0]), mean=1.0, std=2.0)
    r = reward(["a", "b", "c"])
    assert r[1].item() == pytest.approx(2.0 * math.log(0.5))
    assert -1e-4 < r[2].item() <= 0  # far above the mean: about 0, never positive
    assert r[0].item() == pytest.approx(-11.0, abs=0.02)  # far below: about the score minus the mean
    with pytest.raises(ValueError, match="std must be > 0"):
        bench.logsigmoid_reward(lambda texts: None, mean=0.0, std=0.0)


def test_weight_averages_move_by_one_minus_the_decay_per_update(bench):
    model = torch.nn.Linear(3, 2)
    averages = bench.WeightAverages(model, [0.5, 0.9])
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    averages.update()
    assert sorted(averages.averages) == [0.5, 0.9]  # else the loop below checks nothing
    for d, average in averages.averages.items():
        assert torch.allclose(average.weight, start + (1 - d))
        assert not average.weight.requires_grad
    with pytest.raises(ValueError, match="decay must be in"):
        bench.WeightAverages(model, [1.0])


def test_the_script_measures_policy_and_averages_on_both_prompt_sets(bench, capsys):
    assert bench.main(["--steps", "2", "--at", "1", "2", "--ema", "0.5", "--no-eos", "--train-eval",
                       "--batch-size", "4", "--mini-batch-size", "2", "--max-new-tokens", "6",
                       "--eval-prompts", "8"]) == 0
    out = capsys.readouterr().out
    assert "response length 6.0 tokens" in out  # the reference is banned from EOS too
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+[12] (policy|EMA)", line)]
    # step, model ("policy" or "EMA 0.5"), prompts, RM gain, VADER, KL, per sqrt(nat), VADER/std, length, beta
    seen = {(r[0], " ".join(r[1:-8]), r[-8]) for r in rows}
    assert seen == {(s, m, p) for s in "12" for m in ("policy", "EMA 0.5") for p in ("held-out", "training")}
    for row in rows:
        assert float(row[-5]) >= 0  # KL
        assert row[-2] == "6.0"  # every response runs to the limit


def test_the_loss_aggregation_reaches_the_trainers_config(bench, monkeypatch, capsys):
    configs = []

    class Recording(bench.RLHFTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            configs.append(self.config)

    monkeypatch.setattr(bench, "RLHFTrainer", Recording)
    assert bench.main(["--steps", "1", "--loss-aggregation", "response-mean", "--batch-size", "4",
                       "--mini-batch-size", "2", "--max-new-tokens", "6", "--eval-prompts", "8"]) == 0
    assert [c.loss_aggregation for c in configs] == ["response-mean"]


@pytest.mark.parametrize("argv, message", [
    (["--steps", "2", "--at", "3"], "every --at step must be in 1..2 (--steps), got [3]"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--ema", "1.5"], "--ema decay"),
    (["--lam", "2"], "not a valid RLHFConfig: lam must be in [0, 1]"),  # failed after loading
    (["--batch-size", "0"], "not a valid RLHFConfig: batch_size must be >= 1"),
    (["--eval-prompts", "0"], "--eval-prompts must be in 1..1050"),
    (["--loss-aggregation", "mean"], "invalid choice: 'mean'"),
])
def test_bad_arguments_are_usage_errors(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


def test_the_default_measurement_steps_follow_the_steps(bench):
    assert bench.default_at(215) == [50, 100, 150, 215]  # the default run's, unchanged
    assert bench.default_at(100) == [50, 100]
    assert bench.default_at(120) == [50, 100, 120]  # the last step is always measured
    assert bench.default_at(300) == [50, 100, 150, 215, 300]
    assert bench.default_at(10) == [10]


@pytest.mark.parametrize("argv, at", [
    (["--steps", "100"], [50, 100]),  # was refused: "every --at step in 1..100", --at never given
    (["--steps", "30"], [30]),
    ([], [50, 100, 150, 215]),
    (["--steps", "100", "--at", "10", "20"], [10, 20]),
])
def test_steps_alone_measure_at_the_default_steps_that_fit(bench, monkeypatch, argv, at):
    class Loaded(Exception):
        pass

    def loaded(args):
        raise Loaded(args.at)

    monkeypatch.setattr(bench, "load_setup", loaded)
    with pytest.raises(Loaded) as exc:
        bench.main(argv)
    assert exc.value.args[0] == at
