"""The bookkeeping of ``benchmarks/rlhf.py``: checkpoints on a training clock that stops
while the policy is measured, the reading of TRL's path at our final KL, and the gain per
sqrt(nat) of KL."""

import argparse
import importlib.util
import math
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rlhf.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rlhf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checkpoints_fire_once_per_due_point_and_report_their_own_time(bench):
    calls = []

    def measure(policy):
        calls.append(policy)
        time.sleep(0.01)
        return {"kl": 1.0}

    cp = bench.Checkpoints("policy", measure, budget=10.0, n=4)  # due at 2.5, 5, 7.5, 10
    assert cp(1.0, 1) == 0.0 and not calls
    assert cp(2.6, 2) >= 0.01 and len(calls) == 1
    assert cp(3.0, 3) == 0.0 and len(calls) == 1
    cp(8.0, 4)  # past 5 and 7.5 at once: measured once
    assert len(calls) == 2
    cp(10.0, 5)
    assert [r["steps"] for r in cp.rows] == [2, 4, 5]
    assert [r["train_s"] for r in cp.rows] == [2.6, 8.0, 10.0]
    assert cp(11.0, 6) == 0.0 and len(calls) == 3  # nothing is due after the budget
    assert cp.finish(11.0, 6) == 0.0 and len(calls) == 3  # the end was measured already


def test_finish_measures_a_run_that_stopped_short_of_its_last_checkpoint_once(bench):
    """--within-budget stops before the budget, where the last checkpoint is due: finish()
    measures the end there, once, whatever was still due (a run of one step misses them all)."""
    calls = []

    def measure(policy):
        calls.append(policy)
        return {"kl": 1.0}

    cp = bench.Checkpoints("policy", measure, budget=10.0, n=4)
    cp(2.6, 2)
    cp.finish(9.4, 7)
    assert [(r["train_s"], r["steps"]) for r in cp.rows] == [(2.6, 2), (9.4, 7)]
    assert cp.finish(9.4, 7) == 0.0 and len(calls) == 2
    short = bench.Checkpoints("policy", measure, budget=10.0, n=4)
    short.finish(1.0, 1)
    assert [r["steps"] for r in short.rows] == [1] and len(calls) == 3


@pytest.fixture(scope="module")
def tiny():
    from ppo_edu.lm import load_lm, load_reward_model, reward_fn_from_model

    lm, tokenizer = load_lm("tiny")
    rm, rm_tokenizer = load_reward_model("tiny")
    return lm, tokenizer, reward_fn_from_model(rm, rm_tokenizer)


def _ours_args(**overrides) -> argparse.Namespace:
    """run_ours's settings, tiny enough for a test."""
    return argparse.Namespace(**{
        "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "lr": 5e-5, "max_new_tokens": 4,
        "kl_coef": 0.2, "fixed_kl": False, "target_kl": 5.0, "kl_horizon": 300, "kl_estimator": "k1",
        "max_grad_norm": 1.0, "seed": 0, "anneal_lr": False, "within_budget": False,
        "budget": 0.5, "steps": None, "checkpoints": 2, **overrides})


def test_our_run_keeps_measurement_time_off_its_training_clock(bench, tiny):
    lm, tokenizer, reward_fn = tiny
    args = _ours_args()

    def slow_measure(policy):
        time.sleep(1.0)
        return {"kl": 0.0}

    start = time.perf_counter()
    curve, speed = bench.run_ours(lm, tokenizer, reward_fn, ["the film", "a story"], args,
                                  slow_measure)
    wall = time.perf_counter() - start
    # one checkpoint per due point reached (a slow first step can pass both at once); the last at the end
    assert 1 <= len(curve) <= 2 and curve[-1]["steps"] == speed["steps"]
    assert speed["train_s"] >= args.budget and wall >= speed["train_s"] + 1.0 * len(curve)
    assert speed["samples"] == 4 * speed["steps"]
    # adaptive controller: the KL (about 0) is below the 5-nat target, so beta shrank
    assert speed["final_kl_coef"] < args.kl_coef


def test_a_step_budget_trains_exactly_that_many_steps_and_repeats_itself(bench, tiny):
    lm, tokenizer, reward_fn = tiny
    args = _ours_args(steps=4, budget=1e-9)  # the seconds budget is ignored

    def weights(policy):
        return {"kl": float(sum(p.detach().double().sum() for p in policy.parameters()))}

    runs = [bench.run_ours(lm, tokenizer, reward_fn, ["the film", "a story"], args, weights)
            for _ in range(2)]
    for curve, speed in runs:
        assert speed["steps"] == 4 and [row["steps"] for row in curve] == [2, 4]
    assert runs[0][0] == [{**row, "train_s": r0["train_s"]} for row, r0 in zip(runs[1][0], runs[0][0])]
    assert runs[0][0][0]["kl"] != runs[0][0][1]["kl"]  # the policy moved between checkpoints


def test_a_step_budget_is_for_ours_only(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--steps", "10"])
    assert exc.value.code == 2 and "--only ours" in capsys.readouterr().err


def test_fixed_kl_keeps_our_coefficient_where_it_started(bench, tiny):
    lm, tokenizer, reward_fn = tiny
    args = _ours_args(fixed_kl=True, budget=0.3, checkpoints=1)
    _, speed = bench.run_ours(lm, tokenizer, reward_fn, ["the film", "a story"], args,
                              lambda policy: {"kl": 0.0})
    assert speed["steps"] >= 1 and speed["final_kl_coef"] == 0.2


def test_fixed_kl_refuses_the_adaptive_controllers_settings(bench, capsys):
    for flags in (["--target-kl", "4"], ["--kl-horizon", "100"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(["--fixed-kl", *flags])
        assert exc.value.code == 2
        assert "--fixed-kl turns off" in capsys.readouterr().err


def test_gain_on_the_way_out_reads_a_rising_path_and_refuses_otherwise(bench):
    rows = [{"kl": 2.0, "score_gain_in_std": 0.5}, {"kl": 4.0, "score_gain_in_std": 1.5}]
    # linear in sqrt(KL): gain grows like sqrt(KL), which a straight line in KL would undercut
    assert bench.gain_on_the_way_out(rows, 1.0) == pytest.approx(0.5 / math.sqrt(2))  # from (0, 0)
    assert bench.gain_on_the_way_out(rows, 3.0) == pytest.approx(
        0.5 + 1.0 * (math.sqrt(3) - math.sqrt(2)) / (2 - math.sqrt(2)))
    assert bench.gain_on_the_way_out(rows, 4.0) == pytest.approx(1.5)
    assert bench.gain_on_the_way_out(rows, 4.5) is None  # never got that far
    back = [{"kl": 6.0, "score_gain_in_std": 1.8}, {"kl": 5.0, "score_gain_in_std": 1.6}]
    assert bench.gain_on_the_way_out(back, 5.5) == pytest.approx(1.8 * math.sqrt(5.5 / 6.0))
    # the docstring's example: +2.0 std at 7 nats, read at 5 nats
    assert bench.gain_on_the_way_out([{"kl": 7.0, "score_gain_in_std": 2.0}], 5.0) == pytest.approx(
        2.0 * math.sqrt(5 / 7))
    assert bench.gain_on_the_way_out(back + [{"kl": 7.0, "score_gain_in_std": 2.0}], 6.5) is None


def test_gain_per_sqrt_kl_is_scale_free_in_kl_and_undefined_at_zero(bench):
    assert bench.gain_per_sqrt_kl({"score_gain_in_std": 1.5, "kl": 6.25}) == pytest.approx(0.6)
    # four times the KL for twice the gain: the same efficiency (per nat it would halve)
    assert bench.gain_per_sqrt_kl({"score_gain_in_std": 3.0, "kl": 25.0}) == pytest.approx(0.6)
    assert bench.gain_per_sqrt_kl({"score_gain_in_std": 0.3, "kl": 0.0}) is None


# End points of run 1 in the five-seed table of benchmarks/HISTORY.md's section "Measured before
# the prompt split was fixed" (benchmarks/rlhf.py, 120 s, seeds 0-4)
RUN_1_TABLE = {0: ((1.48, 6.29), (1.24, 5.08)), 1: ((1.57, 5.95), (1.46, 6.18)),
                2: ((1.50, 5.21), (1.66, 7.01)), 3: ((1.63, 5.58), (1.45, 5.89)),
                4: ((1.77, 6.54), (1.60, 6.30))}


def _rows(gain, kl, samples_per_s):
    return {"score_gain_in_std": gain, "kl": kl, "judge_gain": 0.3, "samples_per_s": samples_per_s}


def test_seed_summary_pairs_by_seed_and_reads_the_target_per_seed_and_on_the_means(bench):
    per_seed = {s: {"ours": _rows(*o, 24.0), "trl": _rows(*t, 13.0)} for s, (o, t) in RUN_1_TABLE.items()}
    per_seed[5] = {"ours": _rows(9.0, 1.0, 24.0)}  # TRL did not run: left out, not half-counted
    summary = bench.summarize_seeds(per_seed)
    assert summary["seeds"] == [0, 1, 2, 3, 4]
    assert summary["met_on"] == [1, 3]  # run 1's "yes" rows
    gain, kl = summary["table"]["score_gain_in_std"], summary["table"]["kl"]
    assert gain["ours"][0] == pytest.approx(1.59) and gain["trl"][0] == pytest.approx(1.482)
    assert kl["ours"][0] == pytest.approx(5.914) and kl["trl"][0] == pytest.approx(6.092)
    assert summary["met_on_means"]  # more mean gain (1.59 > 1.48) at less mean KL (5.91 < 6.09)
    # paired by seed: the differences' mean and standard error, not those of the two means
    diffs = [o[1] - t[1] for o, t in RUN_1_TABLE.values()]
    mean = sum(diffs) / 5
    se = (sum((d - mean) ** 2 for d in diffs) / 4) ** 0.5 / 5 ** 0.5
    assert kl["paired"] == pytest.approx((mean, se))
    assert summary["table"]["samples_per_s"]["paired"] == pytest.approx((24 / 13, 0.0))
    ratio = summary["table"]["gain_per_sqrt_kl"]
    assert ratio["paired"][0] > 0 and ratio["paired"][0] > 3 * ratio["paired"][1]


def test_seed_summary_on_the_means_fails_when_ours_spends_more_kl(bench):
    per_seed = {0: {"ours": _rows(1.6, 6.0, 20.0), "trl": _rows(1.5, 5.0, 10.0)},
                1: {"ours": _rows(1.6, 6.0, 20.0), "trl": _rows(1.5, 6.5, 10.0)}}
    summary = bench.summarize_seeds(per_seed)
    assert summary["met_on"] == [1] and not summary["met_on_means"]  # 6.0 > 5.75
    with pytest.raises(ValueError, match="both trainers"):
        bench.summarize_seeds({0: {"ours": _rows(1.6, 6.0, 20.0)}})


def test_one_seed_has_no_standard_error(bench):
    assert bench.mean_and_se([2.0])[0] == 2.0
    assert bench.mean_and_se([2.0])[1] != bench.mean_and_se([2.0])[1]  # nan
    assert bench.mean_and_se([1.0, 3.0]) == pytest.approx((2.0, 1.0))


def test_a_repeated_seed_is_a_usage_error(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--seed", "0", "1", "0"])
    assert exc.value.code == 2 and "repeats a seed" in capsys.readouterr().err


def test_shaping_reaches_our_trainer(bench, tiny):
    """--shaping hands run_ours the reward model's prefix potentials: same seed, other weights."""
    from ppo_edu.lm import load_reward_model
    from ppo_edu.rlhf.shaping import reward_model_potentials

    lm, tokenizer, reward_fn = tiny
    rm, _ = load_reward_model("tiny")
    args = _ours_args(steps=2, budget=1e-9, checkpoints=1)

    def weights(policy):
        return {"kl": float(sum(p.detach().double().sum() for p in policy.parameters()))}

    def run(potential_fn):
        return bench.run_ours(lm, tokenizer, reward_fn, ["the film", "a story"], args, weights,
                              potential_fn)[0][-1]["kl"]

    plain, shaped = run(None), run(reward_model_potentials(rm, tokenizer))
    assert shaped != plain


def trl_get_reward(model, query_responses, pad_token_id, context_length):
    """The score TRL 1.12's ``trl.experimental.utils.get_reward`` returns (trl is not a
    test dependency): the score head on the trunk's last hidden states, read at the last
    token before the response's first pad."""
    import torch

    attention_mask = query_responses != pad_token_id
    position_ids = attention_mask.cumsum(1) - attention_mask.long()
    output = getattr(model, model.base_model_prefix)(
        input_ids=torch.masked_fill(query_responses, ~attention_mask, 0), attention_mask=attention_mask,
        position_ids=position_ids, return_dict=True, output_hidden_states=True, use_cache=False)
    logits = model.score(output.hidden_states[-1])
    is_pad = query_responses[:, context_length:] == pad_token_id
    first_pad = torch.where(is_pad.any(1), is_pad.long().argmax(1), torch.full_like(is_pad[:, 0], is_pad.shape[1],
                                                                                 dtype=torch.long))
    return logits[torch.arange(len(logits)), first_pad - 1 + context_length].squeeze(-1)


def test_trl_is_given_the_reward_ours_trains_on(bench):
    """Through RewardAtEos, TRL's reading of the reward model is ours, reward_fn(texts): the
    prompt and the decoded response up to the first EOS, tokenised again, an EOS appended,
    no BOS. The bare model read TRL's way scores something else (a capped response at its
    last word), and so did scoring the sampled ids: a word sampled in pieces the tokenizer
    would not choose is scored as the tokenizer's own pieces."""
    import torch

    from ppo_edu.lm import load_reward_model, reward_fn_from_model

    rm, tok = load_reward_model("tiny", "cpu")
    reward_fn = reward_fn_from_model(rm, tok, "cpu")
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    texts = ("The film", "A slow and", "It", "Oh")
    prompts = [[bos] + tok(p, add_special_tokens=False)["input_ids"] for p in texts]
    words = tok(" dull, tedious affair that never ends and goes on and on", add_special_tokens=False)["input_ids"]
    pieces = [i for ch in " wonderful" for i in tok(ch, add_special_tokens=False)["input_ids"]]
    assert len(pieces) > len(tok(" wonderful", add_special_tokens=False)["input_ids"])  # not the tokenizer's split
    R = 12
    responses = [words[:3] + [eos] + [pad] * (R - 4),  # ends at an EOS, padded after it
                 words[:R],                              # cut at the token limit: no EOS
                 [eos] + [pad] * (R - 1),                # an empty response
                 pieces + [eos] + [pad] * (R - len(pieces) - 1)]  # " wonderful" letter by letter
    width = max(map(len, prompts))
    queries = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    query_responses = torch.cat([queries, torch.tensor(responses)], 1)
    decoded = tok.batch_decode(torch.tensor(responses), skip_special_tokens=True)
    ours = reward_fn([p + r for p, r in zip(texts, decoded)])
    with torch.no_grad():
        wrapped = trl_get_reward(bench.RewardAtEos(rm, tok), query_responses, pad, width)
        bare = trl_get_reward(rm, query_responses, pad, width)
        sampled_ids = rm(input_ids=torch.tensor([prompts[3][1:] + pieces + [eos]])).logits[0, -1].item()
    torch.testing.assert_close(wrapped, ours, atol=1e-5, rtol=1e-5)
    assert abs(bare[1].item() - ours[1].item()) > 0.1  # the capped response, read at its last word
    assert abs(sampled_ids - ours[3].item()) > 0.1  # the letter-by-letter word, scored as sampled


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "not a valid RLHFConfig: batch_size must be >= 1"),
    (["--lr", "-1"], "not a valid RLHFConfig: learning_rate must be a finite number > 0"),
    (["--budget", "nan"], "--budget a finite number > 0"),  # trained 0 steps, then ZeroDivisionError
    (["--eval-prompts", "-1040"], "--eval-prompts must be in 1..1050"),  # held out 11, silently
    (["--eval-prompts", "5000"], "--eval-prompts must be in 1..1050"),
    (["--max-new-tokens", "200"], "--max-new-tokens 200: the longest prompt has"),  # was a late traceback
    (["--max-grad-norm", "0"], "not a valid RLHFConfig: max_grad_norm must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--only", "trl", "--batch-size", "32", "--mini-batch-size", "12"], "not a multiple of --mini-batch-size"),
    (["--only", "trl", "--trl-adam-eps", "0"], "--trl-adam-eps must be a finite number > 0"),
    # inf was accepted
    (["--only", "trl", "--trl-adam-eps", "inf"], "--trl-adam-eps must be a finite number > 0"),
    # checked for TRL when our RLHFConfig, which checks them for ours, is not built (--only trl)
    (["--only", "trl", "--kl-coef", "-1"], "--kl-coef must be a finite number >= 0"),
    (["--only", "trl", "--lr", "nan"], "--lr must be a finite number > 0"),
    (["--only", "trl", "--batch-size", "0"], "--batch-size and --mini-batch-size must be >= 1"),
    # a flag for the trainer --only leaves out was accepted and ignored (--shaping still in the header)
    (["--only", "trl", "--shaping"], "--shaping sets only ours, and --only trl runs TRL alone"),
    (["--only", "trl", "--fixed-kl"], "--fixed-kl sets only ours"),
    (["--only", "trl", "--target-kl", "3"], "--target-kl sets only ours"),
    (["--only", "trl", "--kl-horizon", "100"], "--kl-horizon sets only ours"),
    (["--only", "trl", "--max-grad-norm", "inf"], "--max-grad-norm sets only ours"),
    (["--only", "trl", "--shaping", "--max-grad-norm", "inf"],
     "--max-grad-norm, --shaping set only ours"),
    (["--only", "ours", "--trl-adam-eps", "1e-5"],
     "--trl-adam-eps sets only TRL, and --only ours runs ours alone"),
])
def test_bad_arguments_are_refused_before_any_model_loads(bench, monkeypatch, capsys, flags, message):
    def loaded(args):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(bench, "load_setup", loaded)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "ours", *flags] if "--only" not in flags else flags)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_trainer_that_cannot_run_is_reported_and_fails_the_run(bench, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no room for the value model")

    monkeypatch.setattr(bench, "run_ours", broken)
    code = bench.main(["--only", "ours", "--eval-prompts", "4", "--budget", "1"])
    out = capsys.readouterr().out
    assert "ours: could not run: RuntimeError: no room for the value model" in out
    assert code == 1 and "failed: ours on seed 0" in out  # was exit status 0


def test_a_reward_model_with_another_tokenizer_is_refused_for_trl(bench, monkeypatch, capsys, tmp_path):
    """TRL hands the reward model the policy's token ids; with another tokenizer it would
    score other text, silently."""
    from ppo_edu.lm.testing import save_random_gpt2, small_tokenizer

    rm_dir = save_random_gpt2(tmp_path / "rm", small_tokenizer())

    def loaded(args):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(bench, "load_setup", loaded)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "trl", "--rm", str(rm_dir)])
    assert exc.value.code == 2 and "have different tokenizers" in capsys.readouterr().err


class Loaded(Exception):
    """Raised by a stand-in for ``load_setup``: the arguments passed every check."""


def _accepted(bench, monkeypatch, argv) -> bool:
    """True if ``main(argv)`` gets past its checks to loading the models (nothing is trained);
    the check that TRL can be imported is skipped (trl is not a test dependency)."""
    def loaded(args):
        raise Loaded

    monkeypatch.setattr(bench, "load_setup", loaded)
    monkeypatch.setattr(bench, "check_trl_importable", lambda parser: None)
    try:
        bench.main(argv)
    except Loaded:
        return True
    except SystemExit:
        return False
    raise AssertionError("main returned without loading the models")


@pytest.mark.parametrize("flags, batch, train", [
    (["--eval-prompts", "1030"], 32, 21),
    (["--batch-size", "800", "--mini-batch-size", "8"], 800, 795),
    (["--only", "trl", "--eval-prompts", "1020"], 32, 31),
])
def test_trl_with_fewer_training_prompts_than_a_batch_is_refused_at_once(bench, monkeypatch, capsys,
                                                                          flags, batch, train):
    """TRL's dataloader drops an incomplete batch: with no full batch, train() looped forever
    and the budget callback that stops it was never reached (the run hung, even with 2 s). The
    refusal comes before any model loads (``_accepted`` fails the test if they load), so it cannot
    hang."""
    assert not _accepted(bench, monkeypatch, flags)
    err = capsys.readouterr().err
    assert f"--batch-size {batch} is more than the {train} training prompts" in err
    assert "never stop" in err and "--only ours" in err


def test_the_training_prompts_are_the_test_split_less_the_held_out_ones(bench):
    from ppo_edu.rlhf.setups import load_prompts

    prompts = load_prompts("snippets", "test", seed=3)  # as load_setup cuts them
    assert bench.training_prompt_count(256) == len(prompts[256:]) == 795


def test_ours_alone_may_have_fewer_training_prompts_than_a_batch(bench, monkeypatch):
    assert _accepted(bench, monkeypatch, ["--only", "ours", "--eval-prompts", "1030"])  # ours cycles them
    # one full batch is enough for TRL: 1051 - 1019 = 32
    assert _accepted(bench, monkeypatch, ["--only", "trl", "--eval-prompts", "1019"])


def test_our_config_is_checked_only_when_ours_runs(bench, monkeypatch, capsys):
    """--kl-coef 0 is TRL without a KL penalty; only our adaptive controller cannot start
    from 0. It was refused for --only trl by a check on an RLHFConfig that is never built."""
    assert _accepted(bench, monkeypatch, ["--only", "trl", "--kl-coef", "0"])
    assert not _accepted(bench, monkeypatch, ["--kl-coef", "0"])  # both trainers: ours would run
    assert "not a valid RLHFConfig: adaptive_kl=True with init_kl_coef=0" in capsys.readouterr().err
    assert _accepted(bench, monkeypatch, ["--only", "ours", "--kl-coef", "0", "--fixed-kl"])
    # a default value given explicitly sets nothing, and the defaults pass
    assert _accepted(bench, monkeypatch, ["--only", "trl", "--max-grad-norm", "1"])
    assert _accepted(bench, monkeypatch, [])


def test_the_header_of_a_trl_run_names_none_of_ours_settings(bench, monkeypatch, capsys):
    def stop_after_the_header(*args):
        raise Loaded

    monkeypatch.setattr(bench, "measure", stop_after_the_header)
    monkeypatch.setattr(bench, "check_trl_importable", lambda parser: None)
    headers = {}
    for only in ("trl", "ours"):
        with pytest.raises(Loaded):
            bench.main(["--only", only, "--eval-prompts", "8"])
        headers[only] = capsys.readouterr().out
    assert "KL coef 0.2, k1 in the reward" in headers["trl"] and "ours" not in headers["trl"]
    assert "KL coef 0.2 (ours: adaptive, target 5 nats, horizon 300)" in headers["ours"]
    assert "ours' gradient norm clipped at 1" in headers["ours"]
    assert "lr 5e-05, KL coef" in headers["trl"] and "annealed" not in headers["trl"] + headers["ours"]
    with pytest.raises(Loaded):
        bench.main(["--only", "trl", "--eval-prompts", "8", "--anneal-lr"])
    assert "lr 5e-05 annealed linearly to 0, KL coef" in capsys.readouterr().out
    assert "no step started" not in headers["trl"] + headers["ours"]
    with pytest.raises(Loaded):
        bench.main(["--only", "ours", "--eval-prompts", "8", "--within-budget"])
    assert "budget 120 s (no step started that would end past it), " in capsys.readouterr().out


def test_the_end_table_prints_counts_as_integers_and_no_ratio_of_opposite_gains(bench, monkeypatch, capsys):
    def row(gain, judge, steps):
        return {"train_s": 120.0, "steps": steps, "score": gain, "score_std": 1.0, "judge": judge,
                "ref_nll": 3.0, "kl": 4.0, "score_gain": gain, "judge_gain": judge,
                "score_gain_in_std": gain, "scores": [gain, gain], "kls": [4.0, 4.0]}

    def ours(*args):
        return [row(1.5, -0.1, 5)], {"steps": 5, "samples": 160, "train_s": 120.0,
                                     "samples_per_s": 1.3, "final_kl_coef": 0.1}

    def trl(*args):
        return [row(1.2, 0.2, 3)], {"steps": 3, "samples": 96, "train_s": 120.0, "samples_per_s": 0.8}

    class NoModel:  # what compare_seed's header counts
        def parameters(self):
            return iter(())

    monkeypatch.setattr(bench, "load_setup", lambda args: (NoModel(), None, None, None, None, [], []))
    monkeypatch.setattr(bench, "frozen_reference", lambda lm: None)
    monkeypatch.setattr(bench, "measure", lambda *args: {"score": 0.0, "score_std": 1.0, "judge": 0.0})
    monkeypatch.setattr(bench, "run_ours", ours)
    monkeypatch.setattr(bench, "run_trl", trl)
    args = argparse.Namespace(
        lm="tiny", rm="tiny", fixed_kl=False, target_kl=5.0, kl_horizon=300, batch_size=32,
        mini_batch_size=8, ppo_epochs=4, max_new_tokens=20, shaping=False, lr=5e-5, kl_coef=0.2,
        kl_estimator="k1", max_grad_norm=1.0, steps=None, budget=120.0, threads=1, only=None, anneal_lr=False,
        within_budget=False)
    bench.compare_seed(args, 0)
    out = capsys.readouterr().out

    def line(label):
        return next(x for x in out.splitlines() if x.strip().startswith(label)).split()

    assert line("PPO steps") == ["PPO", "steps", "5", "3"]  # were 5.000 and 3.000
    assert line("RM score gain")[-1] == "1.25"  # both gains positive: their ratio
    # -0.1 against +0.2 printed a ratio of -0.50
    assert line("VADER gain")[-5:] == ["n/a", "(gains", "of", "opposite", "sign)"] and "-0.50" not in out


def test_the_ratio_column_divides_only_comparable_gains(bench):
    assert bench.ratio_cell(1.5, 1.2).split() == ["1.25"]
    assert bench.ratio_cell(0.0, 1.2).split() == ["0.00"]  # ours gained nothing: a ratio of 0 says so
    assert "opposite sign" in bench.ratio_cell(0.3, -0.1)
    assert "both gains negative" in bench.ratio_cell(-0.4, -0.2)  # 2.00 would read as twice the gain
    assert bench.ratio_cell(1.0, 0.0).split() == ["n/a"]


def test_trl_is_built_in_fp32_with_our_settings(bench, monkeypatch):
    """run_trl's PPOTrainer, built and stopped before its first step: fp32 with no gradient
    checkpointing, like ours (TRL's config defaults bf16 and gradient_checkpointing to True;
    on transformers 4.x bf16=True made accelerate train under CPU bf16 autocast), and the
    flags mapped to TRL's settings. Needs trl (the bench extra); skipped without it."""
    ppo = pytest.importorskip("trl.experimental.ppo")
    from ppo_edu.lm import load_lm, load_reward_model

    class Built(Exception):
        pass

    seen = {}

    def train(self):
        seen.update(args=self.args, mixed_precision=self.accelerator.mixed_precision,
                    checkpointing=self.model.is_gradient_checkpointing)  # TRL's wrapper's copy
        raise Built

    monkeypatch.setattr(ppo.PPOTrainer, "train", train)
    lm, tokenizer = load_lm("tiny", "cpu")
    rm, _ = load_reward_model("tiny", "cpu")
    args = _ours_args(batch_size=4, mini_batch_size=2, ppo_epochs=3, lr=3e-5, kl_coef=0.1,
                      kl_estimator="k3", max_new_tokens=6, seed=7, trl_adam_eps=1e-6)
    with pytest.raises(Built):
        bench.run_trl(lm, tokenizer, rm, ["the film", "a story", "it was", "what a"], args,
                      lambda policy: {"kl": 0.0})
    config = seen["args"]
    assert config.bf16 is False and config.fp16 is False and config.gradient_checkpointing is False
    assert getattr(config, "activation_checkpointing", False) is False  # the name since transformers 5
    assert getattr(config, "mixed_precision", "no") == "no"  # transformers 5 reads it from bf16 and fp16
    assert seen["mixed_precision"] == "no" and not seen["checkpointing"]
    assert (config.per_device_train_batch_size, config.num_mini_batches, config.num_ppo_epochs) == (4, 2, 3)
    assert (config.learning_rate, config.kl_coef, config.kl_estimator) == (3e-5, 0.1, "k3")
    assert (config.response_length, config.seed, config.adam_epsilon) == (6, 7, 1e-6)
    assert config.temperature == 1.0 and config.stop_token == "eos"


def test_offline_targets_line_marks_each_target_and_the_five_minute_budget(bench):
    row = {"score_gain_in_std": 1.73, "judge_gain": 0.29, "kl": 4.82, "train_s": 299.0}
    line = bench.offline_targets_line("ours", row)
    assert line.startswith("ours: offline targets: ")
    assert "RM gain +1.73 std met (>= 1)" in line and "VADER gain +0.290 NOT met (>= 0.3)" in line
    assert "KL 4.82 nats met (<= 6)" in line and "within the targets' 300 s" in line
    edge = bench.offline_targets_line("ours", {**row, "score_gain_in_std": 1.0, "judge_gain": 0.3,
                                               "kl": 6.0, "train_s": 300.0})
    assert "NOT" not in edge and "within" in edge  # the bounds themselves meet the targets
    over = bench.offline_targets_line("TRL", {**row, "kl": 6.01, "train_s": 900.0})
    assert "KL 6.01 nats NOT met (<= 6)" in over and "beyond the targets' 300 s: not a test of them" in over


def test_one_trainer_summary_over_seeds_for_only_runs(bench, capsys):
    # --only trl --kl-coef 0.35 --budget 300 --threads 2, seeds 0-2 (the README's table), rounded
    per_seed = {0: {"trl": _rows(1.901, 5.36, 29.0)}, 1: {"trl": _rows(1.731, 4.48, 29.5)},
                2: {"trl": _rows(2.022, 4.98, 29.1)}, 3: {}}  # seed 3: TRL could not run, left out
    summary = bench.summarize_trainer(per_seed, "trl")
    assert summary["seeds"] == [0, 1, 2]
    gains = [1.901, 1.731, 2.022]
    assert summary["table"]["score_gain_in_std"] == pytest.approx(bench.mean_and_se(gains))
    ratios = [g / k ** 0.5 for g, k in zip(gains, (5.36, 4.48, 4.98))]
    assert summary["table"]["gain_per_sqrt_kl"][0] == pytest.approx(sum(ratios) / 3)
    bench.print_trainer_summary(summary)
    out = capsys.readouterr().out
    assert "trl over seeds 0 1 2" in out and "1.885 +-" in out  # the mean gain, (1.901+1.731+2.022)/3
    with pytest.raises(ValueError, match="no seed where ours ran"):
        bench.summarize_trainer(per_seed, "ours")
