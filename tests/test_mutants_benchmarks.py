"""Tests written for mutants of the benchmark scripts that the other tests let through: each
recomputes a figure or a verdict the scripts print by hand, on tiny stand-in inputs (no
training: trainers, models and clocks are replaced by stubs where the figure is pure
bookkeeping)."""

import argparse
import math
import re
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def rlhf(load_benchmark):
    return load_benchmark("rlhf.py")


class FakeClock:
    """A stand-in for the ``time`` module: ``perf_counter`` returns ``t``, which only the test
    (a stub trainer's step, a stub measurement) moves, so every timing is exact."""

    def __init__(self):
        self.t = 100.0

    def perf_counter(self):
        return self.t


def _args(**overrides):
    return argparse.Namespace(**{
        "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 3, "lr": 3e-5, "max_new_tokens": 7,
        "kl_coef": 0.15, "fixed_kl": False, "target_kl": 4.5, "kl_horizon": 250, "kl_estimator": "k3",
        "max_grad_norm": 0.7, "seed": 5, "anneal_lr": False, "within_budget": False, "budget": 4.0, "steps": None, "checkpoints": 2,
        "trl_adam_eps": 1e-6, **overrides})


# ------------------------------------------------------------------ gain_on_the_way_out, gain/sqrt(KL)
def test_trls_gain_at_our_kl_reads_through_a_stretch_where_its_kl_stayed_put(rlhf):
    """Two checkpoints at the same KL are not a KL that "went down": the reading carries on to
    the next checkpoint (a `<=` in the went-down test returned "n/a")."""
    rows = [{"kl": 2.0, "score_gain_in_std": 0.5}, {"kl": 2.0, "score_gain_in_std": 0.7},
            {"kl": 4.0, "score_gain_in_std": 1.5}]
    assert rlhf.gain_on_the_way_out(rows, 3.0) == pytest.approx(
        0.7 + (1.5 - 0.7) * (math.sqrt(3.0) - math.sqrt(2.0)) / (2.0 - math.sqrt(2.0)))


# ------------------------------------------------------------------ our_config and run_ours' figures
def test_our_config_passes_every_flag_of_ours_to_rlhfconfig(rlhf):
    """Each of ours' flags must reach our RLHFConfig (a dropped one silently runs the default:
    --kl-estimator k3, --target-kl, --kl-horizon, --ppo-epochs were each lost by a mutant)."""
    config = rlhf.our_config(_args())
    assert config == {"batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 3, "learning_rate": 3e-5,
                      "max_new_tokens": 7, "init_kl_coef": 0.15, "adaptive_kl": True, "target_kl": 4.5,
                      "kl_horizon": 250, "kl_estimator": "k3", "max_grad_norm": 0.7, "seed": 5}
    assert rlhf.our_config(_args(seed=[9, 1], fixed_kl=True))["seed"] == 9
    assert rlhf.our_config(_args(fixed_kl=True))["adaptive_kl"] is False


def test_our_samples_per_second_are_responses_over_training_seconds(rlhf, monkeypatch):
    """run_ours' samples/s = steps x batch size / training seconds, with the clock stopped while
    a checkpoint is measured (a mutant divided the step count instead of the responses)."""
    clock = FakeClock()
    built = {}

    class Trainer:
        def __init__(self, policy, reference, tokenizer, reward_fn, prompts, config, potential_fn=None):
            built["config"] = config
            self.kl_ctl = SimpleNamespace(value=0.05)

        def step(self):
            clock.t += 0.5  # every PPO step takes half a second

    def measure(policy):
        clock.t += 10.0  # a slow measurement, off the training clock
        return {"kl": 1.0}

    monkeypatch.setattr(rlhf, "time", clock)
    monkeypatch.setattr(rlhf, "RLHFTrainer", Trainer)
    monkeypatch.setattr(rlhf, "PolicyWithValueHead", lambda lm: SimpleNamespace(lm=lm))
    monkeypatch.setattr(rlhf, "frozen_reference", lambda policy: None)
    curve, speed = rlhf.run_ours("lm", None, None, [], _args(budget=4.0, checkpoints=2), measure)
    assert speed["steps"] == 8 and speed["samples"] == 32 and speed["train_s"] == pytest.approx(4.0)
    assert speed["samples_per_s"] == pytest.approx(32 / 4.0)  # 8.0; steps / seconds would be 2.0
    assert [r["steps"] for r in curve] == [4, 8] and speed["final_kl_coef"] == 0.05
    assert built["config"].kl_estimator == "k3" and built["config"].target_kl == 4.5


# ------------------------------------------------------------------ run_trl with a stand-in trl
@pytest.fixture
def fake_trl(monkeypatch):
    """Stand-ins for ``datasets`` and ``trl.experimental.ppo`` (trl is not a test dependency):
    a PPOTrainer whose train() takes steps of exactly one second on the fake clock, calling
    the callbacks as the Hugging Face Trainer does, and draws its first minibatch order from
    numpy's global generator, as TRL 1.12 does."""
    import dataclasses

    seen = {}

    @dataclasses.dataclass
    class PPOConfig:
        output_dir: str = ""
        report_to: str = ""
        save_strategy: str = ""
        logging_steps: int = 0
        disable_tqdm: bool = False
        use_cpu: bool = False
        seed: int = 0
        learning_rate: float = 0.0
        per_device_train_batch_size: int = 0
        gradient_accumulation_steps: int = 0
        num_mini_batches: int = 0
        num_ppo_epochs: int = 0
        local_rollout_forward_batch_size: int = 0
        total_episodes: int = 0
        response_length: int = 0
        stop_token: str = ""
        temperature: float = 0.0
        kl_coef: float = 0.0
        kl_estimator: str = ""
        num_sample_generations: int = 0
        missing_eos_penalty: object = None
        whiten_rewards: bool = False
        adam_epsilon: float = 0.0
        bf16: bool = True
        fp16: bool = False
        gradient_checkpointing: bool = True

    class PPOTrainer:
        def __init__(self, args, callbacks, **kwargs):
            self.args, self.callbacks = args, list(callbacks)
            self.optimizer = SimpleNamespace(param_groups=[{"lr": args.learning_rate}])
            seen["config"] = args

        def remove_callback(self, callback):
            pass

        def train(self):
            seen["first_minibatch_order"] = np.random.permutation(8).tolist()
            for cb in self.callbacks:
                cb.on_train_begin()
            while True:
                seen.setdefault("step_lrs", []).append(self.optimizer.param_groups[0]["lr"])
                seen["clock"].t += 1.0
                for cb in self.callbacks:
                    cb.on_step_end()

    ppo = types.ModuleType("trl.experimental.ppo")
    ppo.PPOConfig, ppo.PPOTrainer = PPOConfig, PPOTrainer
    trl = types.ModuleType("trl")
    experimental = types.ModuleType("trl.experimental")
    trl.experimental, experimental.ppo = experimental, ppo
    datasets = types.ModuleType("datasets")
    datasets.Dataset = SimpleNamespace(from_dict=lambda d: d)
    for name, module in (("trl", trl), ("trl.experimental", experimental), ("trl.experimental.ppo", ppo),
                         ("datasets", datasets)):
        monkeypatch.setitem(sys.modules, name, module)
    return seen


def test_trls_clock_samples_per_second_budget_and_minibatch_seed(rlhf, fake_trl, monkeypatch):
    """run_trl's bookkeeping, on a fake clock: its training clock stops while a checkpoint is
    measured (10 s each here), it stops at the first step that ends at or past the budget,
    samples/s = steps x batch size / training seconds, and numpy's global generator (TRL's
    minibatch shuffle) is seeded with the run's seed. Mutants lost each of these."""
    from ppo_edu.lm.models import TINY_LM_DIR, load_tokenizer

    clock = FakeClock()
    fake_trl["clock"] = clock
    monkeypatch.setattr(rlhf, "time", clock)
    tokenizer = load_tokenizer(TINY_LM_DIR)
    rm = torch.nn.Module()
    rm.score = torch.nn.Linear(2, 1)

    def measure(policy):
        clock.t += 10.0
        return {"kl": 0.5}

    np.random.seed(999)
    curve, speed = rlhf.run_trl(torch.nn.Linear(2, 2), tokenizer, rm, ["the film", "a story"],
                                _args(budget=4.0, checkpoints=2, batch_size=4, mini_batch_size=2, seed=5),
                                measure)
    assert speed["steps"] == 4 and speed["samples"] == 16  # 4 responses a step, not 2 (a minibatch)
    assert speed["train_s"] == pytest.approx(4.0)  # the two 10-s measurements are not training time
    assert speed["samples_per_s"] == pytest.approx(16 / 4.0)
    assert [(r["steps"], r["train_s"]) for r in curve] == [(2, pytest.approx(2.0)), (4, pytest.approx(4.0))]
    assert fake_trl["first_minibatch_order"] == np.random.RandomState(5).permutation(8).tolist()
    config = fake_trl["config"]
    assert (config.num_mini_batches, config.per_device_train_batch_size, config.seed) == (2, 4, 5)
    assert config.bf16 is False and config.gradient_checkpointing is False


def test_anneal_lr_gives_both_trainers_one_linear_schedule_on_their_training_clocks(rlhf, fake_trl,
                                                                                   monkeypatch):
    """--anneal-lr: each step runs at --lr x (1 - training done / budget), the first at --lr, on
    the training clock (a 10-s measurement at the half-way checkpoint is not training, so it must
    not move the rate), for ours and TRL alike; --steps anneals ours over steps. Without the flag
    the rate stays put. Mutants: the schedule read the wall clock, started one step late, or
    was not given to TRL."""
    from ppo_edu.lm.models import TINY_LM_DIR, load_tokenizer

    clock = FakeClock()
    monkeypatch.setattr(rlhf, "time", clock)

    def measure(policy):
        clock.t += 10.0
        return {"kl": 0.5}

    our_lrs = []

    class Trainer:
        def __init__(self, policy, reference, tokenizer, reward_fn, prompts, config, potential_fn=None):
            self.optimizer = SimpleNamespace(param_groups=[{"lr": config.learning_rate} for _ in range(2)])
            self.kl_ctl = SimpleNamespace(value=0.1)

        def step(self):
            our_lrs.append([g["lr"] for g in self.optimizer.param_groups])
            clock.t += 1.0

    monkeypatch.setattr(rlhf, "RLHFTrainer", Trainer)
    monkeypatch.setattr(rlhf, "PolicyWithValueHead", lambda lm: SimpleNamespace(lm=lm))
    monkeypatch.setattr(rlhf, "frozen_reference", lambda policy: None)
    schedule = [3e-5 * f for f in (1.0, 0.75, 0.5, 0.25)]
    for overrides in ({"budget": 4.0}, {"steps": 4, "budget": 1e-9}):
        our_lrs.clear()
        rlhf.run_ours("lm", None, None, [], _args(anneal_lr=True, **overrides), measure)
        assert our_lrs == [pytest.approx([lr, lr]) for lr in schedule]  # every parameter group
    our_lrs.clear()
    rlhf.run_ours("lm", None, None, [], _args(budget=4.0), measure)
    assert our_lrs == [[3e-5, 3e-5]] * 4

    fake_trl["clock"] = clock
    tokenizer = load_tokenizer(TINY_LM_DIR)
    rm = torch.nn.Module()
    rm.score = torch.nn.Linear(2, 1)
    rlhf.run_trl(torch.nn.Linear(2, 2), tokenizer, rm, ["the film", "a story"],
                 _args(anneal_lr=True, budget=4.0), measure)
    assert fake_trl["step_lrs"] == pytest.approx(schedule)
    fake_trl["step_lrs"].clear()
    rlhf.run_trl(torch.nn.Linear(2, 2), tokenizer, rm, ["the film", "a story"], _args(budget=4.0), measure)
    assert fake_trl["step_lrs"] == [3e-5] * 4


def test_a_step_fits_if_the_longest_of_the_last_ten_steps_would_end_within_the_budget(rlhf):
    """--within-budget's prediction: the first step always starts; then the next step is taken
    to last as long as the longest of the last ten, and may end exactly at the budget. Mutants
    used the last step only, or every step since the start."""
    assert rlhf.next_step_fits(0.0, [], 1.0) and rlhf.next_step_fits(50.0, [], 1.0)
    assert rlhf.next_step_fits(9.0, [0.5, 1.0, 0.5], 10.0)  # ends at 10.0 exactly
    assert not rlhf.next_step_fits(9.1, [0.5, 1.0, 0.5], 10.0)  # the last step alone (0.5) would fit
    assert rlhf.next_step_fits(9.1, [5.0] + [0.5] * 10, 10.0)  # the 5-s step is 11 steps back


def test_within_budget_stops_both_trainers_before_the_budget_and_measures_their_end(rlhf, fake_trl,
                                                                                    monkeypatch):
    """--within-budget: no step starts that would end past --budget, predicted on the training
    clock (a 10-s measurement is not a step's time), and the end of training is measured even
    though the last checkpoint (due at the budget) is never reached. Without the flag both stop
    after the first step that ends at or past the budget. 1-s steps, a 4.5-s budget."""
    from ppo_edu.lm.models import TINY_LM_DIR, load_tokenizer

    clock = FakeClock()
    monkeypatch.setattr(rlhf, "time", clock)

    def measure(policy):
        clock.t += 10.0
        return {"kl": 0.5}

    class Trainer:
        def __init__(self, policy, reference, tokenizer, reward_fn, prompts, config, potential_fn=None):
            self.kl_ctl = SimpleNamespace(value=0.1)

        def step(self):
            clock.t += 1.0

    monkeypatch.setattr(rlhf, "RLHFTrainer", Trainer)
    monkeypatch.setattr(rlhf, "PolicyWithValueHead", lambda lm: SimpleNamespace(lm=lm))
    monkeypatch.setattr(rlhf, "frozen_reference", lambda policy: None)
    fake_trl["clock"] = clock
    tokenizer = load_tokenizer(TINY_LM_DIR)
    rm = torch.nn.Module()
    rm.score = torch.nn.Linear(2, 1)

    def run(name, within):
        args = _args(budget=4.5, checkpoints=2, within_budget=within)
        if name == "ours":
            return rlhf.run_ours("lm", None, None, [], args, measure)
        return rlhf.run_trl(torch.nn.Linear(2, 2), tokenizer, rm, ["the film", "a story"], args, measure)

    for name in ("ours", "trl"):
        curve, speed = run(name, True)
        assert speed["steps"] == 4 and speed["train_s"] == pytest.approx(4.0), name
        # the half-way checkpoint (due at 2.25 s) after step 3, the end after step 4
        assert [(r["steps"], r["train_s"]) for r in curve] == [(3, pytest.approx(3.0)), (4, pytest.approx(4.0))]
        curve, speed = run(name, False)
        assert speed["steps"] == 5 and speed["train_s"] == pytest.approx(5.0), name
        assert [r["steps"] for r in curve] == [3, 5]

    # ours predicts from the step it has just taken: after a 3-s step at 4 s, no step fits in 6 s
    durations = iter([1.0, 3.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(Trainer, "step", lambda self: setattr(clock, "t", clock.t + next(durations)))
    curve, speed = rlhf.run_ours("lm", None, None, [], _args(budget=6.0, checkpoints=1, within_budget=True),
                                 measure)
    assert speed["steps"] == 2 and speed["train_s"] == pytest.approx(4.0)


# ------------------------------------------------------------------ compare_seed's end points and lines
BASE = {"score": 1.0, "score_std": 2.0, "judge": 0.1, "kl": 0.0, "ref_nll": 3.0}


def _policy_row(score, judge, kl, scores=None, kls=None):
    # the policy's own score std (5.0) differs from the reference's (2.0): gains are in the reference's;
    # scores and kls: each of four evaluation prompts' (their means are score and kl)
    return {"score": score, "score_std": 5.0, "judge": judge, "kl": kl, "ref_nll": 3.1,
            "scores": np.full(4, score) if scores is None else np.asarray(scores),
            "kls": np.full(4, kl) if kls is None else np.asarray(kls)}


def _compare(rlhf, monkeypatch, trl_points, ours_points=((2.0, 0.2, 1.0), (6.0, 0.3, 3.0))):
    """compare_seed with stub models, trainers and measurements: each trainer's checkpoints are
    measured through compare_seed's own measure_fn on the policies named here."""
    measured = {f"ours-{i}": _policy_row(*p) for i, p in enumerate(ours_points)}
    measured |= {f"trl-{i}": _policy_row(*p) for i, p in enumerate(trl_points)}

    class NoModel:
        def parameters(self):
            return iter(())

    reference_lm = NoModel()

    def measure(lm, reference, tokenizer, prompts, reward_fn, judge_fn, args):
        return dict(BASE) if lm is reference_lm else dict(measured[lm])

    def trainer(name, n, samples_per_s):
        def run(*args):
            measure_fn = args[5]
            curve = [{"train_s": 1.0 + i, "steps": i + 1, **measure_fn(f"{name}-{i}")} for i in range(n)]
            return curve, {"steps": n, "samples": 4 * n, "train_s": float(n), "samples_per_s": samples_per_s,
                           "final_kl_coef": 0.1}
        return run

    monkeypatch.setattr(rlhf, "load_setup", lambda args: (reference_lm, None, None, None, None, [], []))
    monkeypatch.setattr(rlhf, "frozen_reference", lambda lm: None)
    monkeypatch.setattr(rlhf, "measure", measure)
    monkeypatch.setattr(rlhf, "run_ours", trainer("ours", len(ours_points), 30.0))
    monkeypatch.setattr(rlhf, "run_trl", trainer("trl", len(trl_points), 10.0))
    args = argparse.Namespace(**{**vars(_args()), "lm": "tiny", "rm": "tiny", "shaping": False, "threads": 1,
                                 "only": None, "kl_estimator": "k1"})
    return rlhf.compare_seed(args, 3)


def test_the_end_points_are_gains_over_the_reference_in_its_std_at_the_last_checkpoint(rlhf, monkeypatch, capsys):
    """The end-of-seed figures: RM gain (score - reference score), the same in the reference's
    score std (not the policy's), VADER gain (policy - reference), read at the *last*
    checkpoint; TRL's gain at our final KL interpolated on its path; the end-point verdict
    and the samples/s ratio ours / TRL (3.00 here). Mutants flipped or misplaced each."""
    rows = _compare(rlhf, monkeypatch, trl_points=((3.0, 0.15, 2.0), (5.0, 0.35, 4.0)))
    out = capsys.readouterr().out
    ours, trl = rows["ours"], rows["trl"]
    assert ours["score_gain"] == pytest.approx(6.0 - 1.0) and ours["score_gain_in_std"] == pytest.approx(5.0 / 2.0)
    assert ours["judge_gain"] == pytest.approx(0.3 - 0.1) and ours["kl"] == 3.0 and ours["steps"] == 2
    assert trl["score_gain_in_std"] == pytest.approx(2.0) and trl["judge_gain"] == pytest.approx(0.25)

    def line(label):
        return next(x for x in out.splitlines() if x.strip().startswith(label)).split()

    assert line("samples/s") == ["samples/s", "30.000", "10.000", "3.00"]  # the ratio column, ours / TRL
    # TRL's path (2 nats, 1.0 std) -> (4 nats, 2.0 std) read at our 3 nats, linearly in sqrt(KL): 1.543 std
    assert "at our final KL (3.00 nats): ours +2.500 std, TRL +1.543 std (interpolated" in out
    # ours: 2.5 std at 3 nats; TRL: 2.0 std at 4 nats
    assert "end points: ours has at least TRL's reward gain at no more KL; samples/s ratio 3.00" in out
    # each trainer's end point against issue #5's offline targets (ours: 2.5 std, VADER +0.2, 3 nats)
    assert ("ours: offline targets: RM gain +2.50 std met (>= 1), VADER gain +0.200 NOT met (>= 0.3), "
            "KL 3.00 nats met (<= 6) [2 s of training, within the targets' 300 s]") in out
    assert any(x.startswith("trl: offline targets: RM gain +2.00 std met") for x in out.splitlines())


def test_the_end_points_difference_is_paired_prompt_by_prompt_with_its_standard_error(rlhf, monkeypatch, capsys):
    """The evaluation's noise in the end-point verdict: ours - TRL prompt by prompt (the same
    prompts), mean +- sample std / sqrt(n), the score's in the reference's std. TRL's scores
    follow ours' pattern a point lower, so paired they differ by exactly 1 on every prompt
    (an unpaired standard error would be 0.20 std); the KLs differ by -2, -1, -1, 0."""
    pattern = np.array([-0.5, 0.5, -0.5, 0.5])
    _compare(rlhf, monkeypatch,
             ours_points=((2.0, 0.2, 1.0), (6.0, 0.3, 3.0, 6.0 + pattern, [2.0, 3.0, 3.0, 4.0])),
             trl_points=((3.0, 0.15, 2.0), (5.0, 0.35, 4.0, 5.0 + pattern, [4.0, 4.0, 4.0, 4.0])))
    out = capsys.readouterr().out
    # gain: +1 / 2.0 (the reference's std); KL: mean -1, sample std sqrt(2/3), / 2 = 0.41 (ddof 0: 0.35)
    assert ("end points, ours - TRL prompt by prompt over the 4 evaluation prompts: RM gain +0.500 +- 0.000 "
            "std, KL -1.00 +- 0.41 nats") in out
    assert rlhf.paired_difference([1.0, 2.0, 4.0], [0.0, 0.0, 0.0]) == pytest.approx((7 / 3, np.sqrt(7 / 3) / np.sqrt(3)))
    with pytest.raises(ValueError, match="one figure per evaluation prompt"):
        rlhf.paired_difference([1.0], [0.0])
    with pytest.raises(ValueError, match=r"got shapes \(1,\) and \(3,\)"):  # would broadcast to 3 prompts
        rlhf.paired_difference([1.0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("trl_points, says", [
    (((3.0, 0.15, 1.0), (5.0, 0.35, 2.0)), "n/a (not reached: its KL peaked at 2.00 nats)"),
    # 2 nats, back to 1, up to 4, back to 2.5: our 3 nats is below the peak (not the last), but
    # the path went down before it got there
    (((3.0, 0.15, 2.0), (2.5, 0.1, 1.0), (5.0, 0.35, 4.0), (4.0, 0.3, 2.5)),
     "n/a (its KL fell between checkpoints before reaching 3.00 nats)"),
])
def test_trls_gain_at_our_kl_says_why_it_has_no_value(rlhf, monkeypatch, capsys, trl_points, says):
    """"not reached" only when TRL's highest KL (not its last) is below ours."""
    _compare(rlhf, monkeypatch, trl_points=trl_points)
    assert says in capsys.readouterr().out


# ------------------------------------------------------------------ the verdicts and the seed summary
def _row(gain, kl, samples_per_s=10.0, judge=0.3):
    return {"score_gain_in_std": gain, "kl": kl, "judge_gain": judge, "samples_per_s": samples_per_s}


def test_the_end_point_target_holds_at_equal_gain_and_equal_kl(rlhf):
    """"At least TRL's gain at no more KL": equal gain counts, equal KL counts (a `>` or a `<`
    in the verdict, per seed or on the means, turned ties into misses)."""
    assert rlhf.end_point_met(_row(1.5, 5.0), _row(1.5, 4.0)) is False
    assert rlhf.end_point_met(_row(1.5, 5.0), _row(1.5, 5.0))
    assert rlhf.end_point_met(_row(1.5, 4.0), _row(1.5, 5.0))
    assert rlhf.end_point_met(_row(1.6, 5.0), _row(1.5, 5.0))
    per_seed = {0: {"ours": _row(1.5, 5.0), "trl": _row(1.5, 5.0)},
                1: {"ours": _row(1.7, 6.0), "trl": _row(1.7, 6.0)}}
    summary = rlhf.summarize_seeds(per_seed)
    assert summary["met_on"] == [0, 1] and summary["met_on_means"]


def test_the_seed_summary_lists_seeds_in_order_and_survives_a_seed_at_zero_kl(rlhf):
    """Seeds are reported in increasing order whatever order they ran in, and a seed whose KL
    is 0 (gain/sqrt(KL) undefined) drops that one figure, not the whole summary."""
    per_seed = {4: {"ours": _row(1.0, 1.0), "trl": _row(0.5, 2.0)},
                2: {"ours": _row(0.8, 0.0), "trl": _row(0.5, 2.0)}}
    summary = rlhf.summarize_seeds(per_seed)
    assert summary["seeds"] == [2, 4] and summary["met_on"] == [2, 4]
    assert "gain_per_sqrt_kl" not in summary["table"]
    assert summary["table"]["kl"]["ours"][0] == pytest.approx(0.5)
    # paired differences 0.3 and 0.5: mean 0.4, sample std 0.1 * sqrt(2), standard error 0.1
    assert summary["table"]["score_gain_in_std"]["paired"] == pytest.approx((0.4, 0.1))


def test_the_printed_summary_puts_ours_trl_and_the_paired_difference_in_their_columns(rlhf, capsys):
    per_seed = {0: {"ours": _row(1.6, 5.0, 24.0), "trl": _row(1.2, 6.0, 12.0)},
                1: {"ours": _row(1.4, 7.0, 24.0), "trl": _row(1.4, 6.0, 12.0)},
                2: {"ours": _row(1.0, 4.0, 24.0), "trl": _row(0.9, 3.0, 12.0)}}
    rlhf.print_summary(rlhf.summarize_seeds(per_seed))
    out = capsys.readouterr().out
    kl = next(x for x in out.splitlines() if x.strip().startswith("mean KL")).replace("+-", " ").split()
    # ours 5, 7, 4: mean 5.333; TRL 6, 6, 3: mean 5.0; paired 1, -1, 1: mean 0.333, se 0.667
    assert kl[3:] == ["5.333", "0.882", "5.000", "1.000", "0.333", "0.667"]
    speed = next(x for x in out.splitlines() if x.strip().startswith("samples/s"))
    assert "2.000 +-0.000  (ratio ours / TRL)" in speed
    assert "met on 1 of 3 seeds (0); on the means: not met" in out  # mean KL 5.33 > 5.0


# ------------------------------------------------------------------ main's and check_setup_args' refusals
def _refused(rlhf, monkeypatch, argv) -> str:
    """main(argv)'s usage error (models are never loaded)."""
    def loaded(args):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(rlhf, "load_setup", loaded)
    monkeypatch.setattr(rlhf, "check_trl_importable", lambda parser: None)
    with pytest.raises(SystemExit) as exc:
        rlhf.main(argv)
    assert exc.value.code == 2
    return exc


@pytest.mark.parametrize("argv, message", [
    (["--only", "ours", "--checkpoints", "0"], "--checkpoints and --ppo-epochs must be >= 1"),  # curve[-1] of nothing
    (["--only", "trl", "--ppo-epochs", "0"], "--checkpoints and --ppo-epochs must be >= 1"),  # no RLHFConfig for trl
    (["--only", "ours", "--steps", "0"], "--steps must be >= 1"),  # ran on --budget seconds instead
    (["--only", "ours", "--eval-prompts", "1051"], "--eval-prompts must be in 1..1050"),  # no training prompt
    (["--only", "trl", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--only", "ours", "--steps", "9", "--within-budget"], "give one or the other"),  # ignored one
])
def test_main_refuses_settings_that_would_run_wrongly(rlhf, monkeypatch, capsys, argv, message):
    _refused(rlhf, monkeypatch, argv)
    assert message in capsys.readouterr().err


def test_trls_refusals_of_batch_settings_say_what_would_work(rlhf, monkeypatch, capsys):
    """A minibatch size of 0 is a usage error (not a ZeroDivisionError from the multiple
    check), and too few training prompts suggest the largest --eval-prompts that leaves one
    full batch: 1051 prompts - 32 = 1019."""
    _refused(rlhf, monkeypatch, ["--only", "trl", "--mini-batch-size", "0"])
    assert "--batch-size and --mini-batch-size must be >= 1" in capsys.readouterr().err
    _refused(rlhf, monkeypatch, ["--only", "trl", "--eval-prompts", "1030"])
    assert "Use --eval-prompts at most 1019, --batch-size at most 21" in capsys.readouterr().err


def test_the_context_check_counts_the_bos_and_allows_exactly_the_context(rlhf):
    """The longest prompt of the seeds run (BOS included) plus --max-new-tokens may fill the
    policy's context exactly; one more token is refused. The longest prompt depends on the
    seeds (each seed draws other openings)."""
    from ppo_edu.lm.models import TINY_LM_DIR, load_tokenizer
    from ppo_edu.lm.reward import text_ids
    from ppo_edu.rlhf.setups import load_prompts

    tokenizer = load_tokenizer(TINY_LM_DIR)

    def longest(seed):
        return max(len(ids) for ids in text_ids(tokenizer, load_prompts("snippets", "test", seed=seed))) + 1

    assert longest(3) < longest(0)  # what makes the seeds matter
    assert rlhf.longest_prompt_and_context("tiny", [3]) == (longest(3), 128)
    assert rlhf.longest_prompt_and_context("tiny", [3, 0]) == (longest(0), 128)
    parser = argparse.ArgumentParser()

    def check(seed, new_tokens):
        args = argparse.Namespace(threads=1, seed=seed, max_new_tokens=new_tokens, eval_prompts=8, lm="tiny")
        rlhf.check_setup_args(parser, args)

    check([3], 128 - longest(3))  # fills the context exactly
    with pytest.raises(SystemExit):
        check([3], 128 - longest(3) + 1)
    with pytest.raises(SystemExit):
        check([3, 0], 128 - longest(3))


def test_check_setup_args_refuses_no_training_prompts(rlhf, capsys):
    parser = argparse.ArgumentParser()
    args = argparse.Namespace(threads=1, seed=0, max_new_tokens=20, eval_prompts=8, lm="tiny", train_prompts=0)
    with pytest.raises(SystemExit):
        rlhf.check_setup_args(parser, args)
    assert "--train-prompts must be >= 1" in capsys.readouterr().err


def test_several_seeds_of_one_trainer_print_its_own_summary(rlhf, monkeypatch, capsys):
    """With --only there is nothing to pair: several seeds end with the one trainer's means
    (not the paired table, not a "no summary" line)."""
    monkeypatch.setattr(rlhf, "compare_seed",
                        lambda args, seed: {"ours": _row(1.0 + seed, 2.0)})
    assert rlhf.main(["--only", "ours", "--seed", "0", "1", "--eval-prompts", "8"]) == 0
    out = capsys.readouterr().out
    assert "no summary" not in out and "ours - TRL" not in out
    assert "=== ours over seeds 0 1: mean +- standard error ===" in out
    assert "1.500 +-0.500" in out  # RM gain: seeds 0 and 1 gained 1.0 and 2.0


# ------------------------------------------------------------------ load_setup, measure
def test_load_setup_holds_out_the_seeds_first_prompts_and_trains_on_the_rest(rlhf):
    """The evaluation prompts are never trained on, and each seed shuffles its own prompts."""
    from ppo_edu.rlhf.setups import load_prompts

    *_, train_prompts, eval_prompts = rlhf.load_setup(argparse.Namespace(lm="tiny", rm="tiny", seed=3,
                                                                         eval_prompts=10))
    prompts = load_prompts("snippets", "test", seed=3)
    assert prompts != load_prompts("snippets", "test", seed=0)
    assert eval_prompts == prompts[:10] and train_prompts == prompts[10:]


def test_measure_uses_the_run_length_and_one_sampling_seed_for_every_seed(rlhf, monkeypatch):
    """Every policy of every seed is measured on the same draws (sampling seed 12345) with the
    run's --max-new-tokens (a mutant let evaluate_policy's default of 20 apply)."""
    calls = []

    def evaluate_policy(*args, **kwargs):
        calls.append(kwargs)
        return SimpleNamespace(summary=lambda: {"score": 0.0}, scores=np.ones(3), kls=np.zeros(3))

    monkeypatch.setattr(rlhf, "evaluate_policy", evaluate_policy)
    for seed in (0, 4):
        measured = rlhf.measure(None, None, None, [], None, None, argparse.Namespace(max_new_tokens=9, seed=seed))
        # with each prompt's score and KL, for the end points' paired standard errors
        assert measured["scores"].tolist() == [1.0] * 3 and measured["kls"].tolist() == [0.0] * 3
    assert calls == [{"max_new_tokens": 9, "seed": 12345}] * 2


# ------------------------------------------------------------------ RewardAtEos
def test_reward_at_eos_refuses_a_prompt_without_its_bos(rlhf):
    """run_trl builds every prompt as [BOS] + prompt; a row without it would be decoded from
    the wrong place, so the wrapper refuses it."""
    from ppo_edu.lm import load_reward_model

    rm, tok = load_reward_model("tiny", "cpu")
    ids = tok("The film was", add_special_tokens=False)["input_ids"]
    good = torch.tensor([[tok.bos_token_id] + ids])
    wrapped = rlhf.RewardAtEos(rm, tok)
    with torch.no_grad():
        wrapped.backbone(input_ids=good, attention_mask=torch.ones_like(good))
        with pytest.raises(ValueError, match="BOS"):
            wrapped.backbone(input_ids=torch.tensor([ids + [ids[0]]]), attention_mask=torch.ones(1, len(ids) + 1))


# ================================================================== benchmarks/rlhf_variants.py
@pytest.fixture(scope="module")
def variants(load_benchmark):
    return load_benchmark("rlhf_variants.py")


def test_a_token_id_equal_to_the_vocabulary_size_is_refused(variants):
    from ppo_edu.lm import load_lm

    lm, _ = load_lm("tiny", "cpu")
    vocab = lm.get_output_embeddings().out_features
    with pytest.raises(ValueError, match="outside the vocabulary"):
        variants.ban_token(lm, vocab)  # one past the last id
    variants.ban_token(lm, vocab - 1)


def test_an_ema_decay_of_zero_is_refused(variants):
    with pytest.raises(ValueError, match="decay must be in"):
        variants.WeightAverages(torch.nn.Linear(1, 1), [0.0])


def _run_variants(variants, monkeypatch, argv):
    """rlhf_variants.main with stub models, trainer and measurements: the policy is a 1x1
    linear layer whose weight is the step count; a measurement reads its weight ``w`` and the
    prompt set. Reference (w = 0): held-out score 1.0 (std 2.0), VADER 0.1; training prompts
    score 3.0 (std 4.0), VADER 0.5. A model at weight w scores w more, has VADER 0.1 w more,
    and KL w**2; its own score std is 7.0 (never the one to divide by)."""
    eval_prompts, train_prompts = ["e1", "e2"], ["t1", "t2", "t3"]
    base = {"held-out": (1.0, 2.0, 0.1), "training": (3.0, 4.0, 0.5)}
    seen = {}

    def measure(model, reference, tokenizer, prompts, reward_fn, judge_fn, args):
        w = float(model.weight.detach())
        score, std, judge = base["held-out" if list(prompts) == eval_prompts else "training"]
        return {"score": score + w, "score_std": std if w == 0 else 7.0, "judge": judge + 0.1 * w,
                "kl": w * w, "response_length": 5.0}

    class Trainer:
        def __init__(self, policy, reference, tokenizer, reward_fn, prompts, config, potential_fn=None):
            seen.update(reward_fn=reward_fn, config=config, potential_fn=potential_fn, prompts=prompts)
            self.policy, self.kl_ctl = policy, SimpleNamespace(value=0.2)

        def step(self):
            with torch.no_grad():
                self.policy.lm.weight += 1.0

    lm = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lm.weight.zero_()
    reward_fn = lambda texts: torch.tensor([3.0] * len(texts))
    monkeypatch.setattr(variants, "load_setup", lambda args: (lm, None, "rm", reward_fn, None, train_prompts,
                                                               eval_prompts))
    monkeypatch.setattr(variants, "frozen_reference", lambda model: None)
    monkeypatch.setattr(variants, "measure", measure)
    monkeypatch.setattr(variants, "PolicyWithValueHead", lambda model: SimpleNamespace(lm=model))
    monkeypatch.setattr(variants, "RLHFTrainer", Trainer)
    monkeypatch.setattr(variants, "reward_model_potentials", lambda rm, tokenizer: ("potentials of", rm))
    assert variants.main(argv) == 0
    return seen


def _variant_rows(out):
    return {(r[0], " ".join(r[1:-8]), r[-8]): [float(x) for x in r[-7:]]
            for r in (line.split() for line in out.splitlines()) if re.match(r"\d+$", r[0] if r else "")
            and len(r) >= 10}


def test_variants_print_gains_in_the_reference_std_of_each_prompt_set(variants, monkeypatch, capsys):
    """Each row: RM gain in the reference's std on the same prompts (training prompts against
    the reference on the training prompts), VADER gain, KL, gain per sqrt(nat), VADER gain
    per std, for the policy and its weight average (updated every step)."""
    _run_variants(variants, monkeypatch, ["--steps", "2", "--at", "2", "--ema", "0.5", "--train-eval",
                                          "--eval-prompts", "8", "--target-kl", "3.5"])
    rows = _variant_rows(capsys.readouterr().out)
    # policy at w = 2: held-out gain 2 / 2.0 = 1.0, VADER +0.2, KL 4, 1.0 / sqrt(4) = 0.5, 0.2 / 1.0
    assert rows[("2", "policy", "held-out")][:5] == pytest.approx([1.0, 0.2, 4.0, 0.5, 0.2], abs=1e-3)
    # the training prompts against the reference on the training prompts: 2 / 4.0 = 0.5
    assert rows[("2", "policy", "training")][:5] == pytest.approx([0.5, 0.2, 4.0, 0.25, 0.4], abs=1e-3)
    # EMA 0.5: 0 -> 0.5 (after step 1) -> 1.25 (after step 2)
    assert rows[("2", "EMA 0.5", "held-out")][:3] == pytest.approx([0.625, 0.125, 1.56], abs=1e-3)  # KL 1.5625


def test_variants_hand_the_trainer_its_settings_and_reward(variants, monkeypatch, capsys):
    """--target-kl reaches our RLHFConfig; --reward logsigmoid is centred on the reference's
    held-out mean score and scaled by its std; --shaping hands over the reward model's
    potentials; --extra-prompts all adds the validation and train openings."""
    import torch.nn.functional as F

    from ppo_edu.rlhf.setups import load_prompts

    seen = _run_variants(variants, monkeypatch, ["--steps", "1", "--eval-prompts", "8", "--target-kl", "3.5",
                                                 "--reward", "logsigmoid"])
    assert seen["config"].target_kl == 3.5 and seen["potential_fn"] is None
    # score 3.0, reference mean 1.0 and std 2.0: 2 log sigmoid((3 - 1) / 2)
    assert seen["reward_fn"](["x"]).item() == pytest.approx(2.0 * F.logsigmoid(torch.tensor(1.0)).item())
    seen = _run_variants(variants, monkeypatch, ["--steps", "1", "--eval-prompts", "8", "--shaping",
                                                 "--extra-prompts", "all"])
    assert seen["potential_fn"] == ("potentials of", "rm")
    extra = len(load_prompts("snippets", "validation", seed=0)) + len(load_prompts("snippets", "train", seed=0))
    assert len(seen["prompts"]) == 3 + extra
    capsys.readouterr()


def test_shaping_goes_with_the_raw_score_only(variants, monkeypatch, capsys):
    def loaded(args):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(variants, "load_setup", loaded)
    with pytest.raises(SystemExit):
        variants.main(["--shaping", "--reward", "logsigmoid"])
    assert "--shaping uses the reward model's raw prefix scores" in capsys.readouterr().err


# ================================================================== benchmarks/best_of_n.py
@pytest.fixture()
def best_of_n(load_benchmark):
    return load_benchmark("best_of_n.py")


def _run_best_of_n(bench, monkeypatch, scores, judge, argv):
    seen = {}

    def sample_and_score(lm, tokenizer, prompts, reward_fn, judge_fn, **kwargs):
        seen.update(kwargs)
        return np.asarray(scores, dtype=np.float64), np.asarray(judge, dtype=np.float64)

    monkeypatch.setattr(bench, "load_setup", lambda args: (None, None, None, None, None, [], ["p"]))
    monkeypatch.setattr(bench, "sample_and_score", sample_and_score)
    assert bench.main(argv) == 0
    return seen


def test_best_of_n_table_by_hand(best_of_n, monkeypatch, capsys):
    """Two prompts, four samples each: every figure of the table recomputed from the
    best-of-n estimates (gain in the std of all reference samples' scores, VADER gain, gain
    per sqrt of the KL bound, VADER gain per std), the correlation, and the sampling seed."""
    from ppo_edu.rlhf.best_of_n import best_of_n_curve, best_of_n_kl

    scores = [[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [5.0, 0.0]]
    judge = [[0.1, 0.0], [0.0, 0.4], [0.3, 0.2], [0.9, -0.2]]
    seen = _run_best_of_n(best_of_n, monkeypatch, scores, judge,
                          ["--samples", "4", "--seed", "3", "--sampling-seed", "7", "--eval-prompts", "8"])
    out = capsys.readouterr().out
    assert seen["seed"] == 7 and seen["num_samples"] == 4
    rho = np.corrcoef(np.ravel(scores), np.ravel(judge))[0, 1]
    assert f"correlation score-VADER {rho:.3f}" in out
    std = np.std(scores)
    rows = best_of_n_curve(scores, judge, [1, 2, 4])
    printed = {int(r[0]): r[1:] for r in (line.split() for line in out.splitlines())
               if r and r[0] in {"1", "2", "4"} and len(r) == 6}
    for row in rows[1:]:
        gain = (row["score"] - rows[0]["score"]) / std
        judge_gain = row["judge"] - rows[0]["judge"]
        assert printed[row["n"]] == [f"{best_of_n_kl(row['n']):.2f}", f"{gain:+.2f}", f"{judge_gain:+.3f}",
                                     f"{gain / row['kl_bound'] ** 0.5:.3f}", f"{judge_gain / gain:.3f}"]


def test_best_of_n_targets_are_met_at_exactly_one_std_and_0_3_of_vader(best_of_n, monkeypatch, capsys):
    """"RM gain >= 1 std, VADER gain >= 0.3": exactly 1 and exactly 0.3 meet them. One prompt,
    two samples: scores 0 and 2 (mean 1, std 1), so best-of-2 gains exactly 1 std, and VADER
    0.3 - 0.0 = 0.3."""
    _run_best_of_n(best_of_n, monkeypatch, [[0.0], [2.0]], [[-0.3], [0.3]], ["--samples", "2", "--eval-prompts", "8"])
    assert "first met at n = 2: KL <= 0.19 nats" in capsys.readouterr().out


def test_best_of_n_names_the_first_n_that_meets_the_targets(best_of_n, monkeypatch, capsys):
    scores = [[0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [8.0]]
    judge = [[0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [2.0]]
    from ppo_edu.rlhf.best_of_n import best_of_n_curve

    rows = best_of_n_curve(scores, judge, [1, 2, 4, 8])
    std = np.std(scores)
    met = [r["n"] for r in rows if (r["score"] - rows[0]["score"]) / std >= 1 and r["judge"] - rows[0]["judge"] >= 0.3]
    assert met == [4, 8]
    _run_best_of_n(best_of_n, monkeypatch, scores, judge, ["--samples", "8", "--eval-prompts", "8"])
    assert "first met at n = 4:" in capsys.readouterr().out


# ================================================================== benchmarks/distill_best_of_n.py
@pytest.fixture(scope="module")
def distill_bench(load_benchmark):
    return load_benchmark("distill_best_of_n.py")


def test_the_chosen_responses_keep_their_eos(distill_bench):
    """The pairs distilled on are "response ids up to and including EOS": a policy trained
    on responses cut before their EOS never learns to stop."""
    from ppo_edu.lm import load_lm

    lm, tokenizer = load_lm("tiny", "cpu")
    shortest = lambda texts: -torch.tensor([float(len(t)) for t in texts])  # picks the ended ones
    pairs, _ = distill_bench.best_responses(lm, tokenizer, ["The film", "A dull and", "Funny", "It is"],
                                            shortest, 16, 12, seed=0)
    ended = [r for _, r in pairs if len(r) < 12]
    assert len(ended) >= 2  # the shortest of 16 samples of up to 12 tokens (4 of 8 ended none)
    assert all(r[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in r[:-1] for r in ended)


def _tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                      resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3, pad_token_id=39))


def test_distill_is_adam_on_the_shuffled_response_loss_without_dropout(distill_bench):
    """distill's recipe recomputed step by step: Adam (eps 1e-5), a fresh seeded permutation
    each epoch, batches of the response NLL in eval mode (no dropout), gradients zeroed and
    clipped at norm 1 before each step, and after_epoch given the epoch's mean batch loss.
    The parameters must match bit for bit."""
    import copy

    pairs = [([1, 5, 6], [7, 8, 2]), ([1, 9], [10, 2]), ([1, 11, 12, 13], [14, 15, 16, 2]), ([1, 3], [4, 2]),
             ([1, 20], [21, 22, 2])]
    policy, ref = _tiny_gpt2(), None
    ref = copy.deepcopy(policy)
    reported = []
    distill_bench.distill(policy, pairs, 39, epochs=2, lr=1e-2, batch_size=2, seed=3,
                          after_epoch=lambda epoch, loss: reported.append((epoch, loss)))

    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5)
    rng = np.random.default_rng(3)
    ref.eval()
    expected = []
    for epoch in (1, 2):
        losses = []
        order = rng.permutation(len(pairs))
        for start in range(0, len(pairs), 2):
            loss = distill_bench.response_nll(ref, [pairs[i] for i in order[start:start + 2]], 39)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        expected.append((epoch, float(np.mean(losses))))
    assert reported == expected
    for (name, p), q in zip(policy.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name


def test_distill_stops_on_a_non_finite_loss(distill_bench, monkeypatch):
    monkeypatch.setattr(distill_bench, "response_nll",
                        lambda policy, pairs, pad: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        distill_bench.distill(_tiny_gpt2(), [([1], [2])], 39, 1, 1e-3, 1, 0, lambda epoch, loss: None)


def test_distill_prints_gains_in_reference_std(distill_bench, monkeypatch, capsys):
    """The distillation table's figures by hand: reference score 1.0 (std 2.0) and VADER 0.1;
    after the epoch, score 4.0 (own std 9.0), VADER 0.4, KL 2.25: gain +1.5 std, +0.3 VADER,
    1.5 / 1.5 = 1.0 per sqrt(nat), 0.3 / 1.5 = 0.2 per std; the chosen responses' edge on the
    training prompts (0.5 -> 1.5) is 0.5 reference std. Without --train-prompts every
    training prompt is used."""
    lm = torch.nn.Linear(1, 1)

    def measure(model, *args):
        if model is lm:
            return {"score": 1.0, "score_std": 2.0, "judge": 0.1, "kl": 0.0}
        return {"score": 4.0, "score_std": 9.0, "judge": 0.4, "kl": 2.25}

    train = [f"t{i}" for i in range(60)]
    tokenizer = SimpleNamespace(pad_token_id=0)
    monkeypatch.setattr(distill_bench, "load_setup", lambda args: (lm, tokenizer, None, None, None, train, ["e"]))
    monkeypatch.setattr(distill_bench, "frozen_reference", lambda model: None)
    monkeypatch.setattr(distill_bench, "measure", measure)
    monkeypatch.setattr(distill_bench, "best_responses", lambda *args: ([], np.array([0.5, 1.5])))
    monkeypatch.setattr(distill_bench, "distill", lambda policy, pairs, pad, epochs, lr, bs, seed, after: after(1, 2.5))
    assert distill_bench.main(["--eval-prompts", "8", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "60 training prompts" in out and "score +0.50 reference std above a single sample" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["1"])
    assert row == ["1", "2.500", "+1.500", "+0.300", "2.25", "1.000", "0.200"]


def test_distill_refuses_a_batch_size_of_zero(distill_bench, monkeypatch, capsys):
    def loaded(args):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(distill_bench, "load_setup", loaded)
    with pytest.raises(SystemExit):
        distill_bench.main(["--batch-size", "0"])
    assert "error: --batch-size must be >= 1" in capsys.readouterr().err


# ================================================================== benchmarks/cartpole.py
@pytest.fixture(scope="module")
def cartpole(load_benchmark):
    return load_benchmark("cartpole.py")


def _balance(obs):
    """Push the cart the way the pole falls: holds CartPole-v1 up for its 500 steps from most starts."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(int)


@pytest.mark.parametrize("act", [lambda obs: np.zeros(len(obs), dtype=int), _balance], ids=["left", "balance"])
def test_deterministic_eval_is_the_mean_return_from_the_seeded_start_states(cartpole, act):
    """By hand, one gymnasium episode at a time: episode i starts from reset(seed=10_000 + i)
    and ends when the env terminates *or* truncates at 500 steps; the figure is the mean."""
    import gymnasium as gym

    returns = []
    for i in range(5):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=10_000 + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(act(obs[None])[0]))
            total += reward
            done = terminated or truncated
        env.close()
        returns.append(total)
    assert len(set(returns)) > 1 or returns[0] == 500.0  # start states that differ, or the time limit
    calls = []

    def counted(obs):  # an evaluation that steps past the 500-step limit could balance forever
        calls.append(len(obs))
        if len(calls) > 500:
            raise RuntimeError("stepped an episode past CartPole-v1's 500-step time limit")
        return act(obs)

    assert cartpole.deterministic_eval(counted, episodes=5) == pytest.approx(float(np.mean(returns)))
    assert sum(calls) == sum(returns)  # one action per step of a running episode


def test_the_tracker_evaluates_when_due_and_keeps_the_first_solve(cartpole, monkeypatch):
    """Evaluations at every multiple of eval_every reached (one for a jump past several), the
    target reached at exactly the target, the first solve kept (steps, seconds at the end of
    that evaluation, evaluation seconds so far)."""
    means = iter([100.0, 475.0, 500.0])
    ticks = iter(range(1000))
    monkeypatch.setattr(cartpole, "deterministic_eval", lambda act: next(means))
    monkeypatch.setattr(cartpole, "CLOCK", lambda: float(next(ticks)))  # +1 s a reading
    tracker = cartpole.Tracker(eval_every=100, target=475.0, start=0.0)
    assert tracker.maybe_eval(99, None) is False and tracker.curve == []
    assert tracker.maybe_eval(100, None) is False  # evaluates: 100 < 475; clock 0 -> 1
    assert tracker.maybe_eval(350, None) is True  # past 200 and 300: one evaluation; 475 >= 475; clock 2 -> 3
    assert tracker.maybe_eval(360, None) is False and len(tracker.curve) == 2  # next due at 400
    assert tracker.maybe_eval(400, None) is True  # 500, also above: the first solve stays
    assert tracker.solved_at == (350, 3.0, 2.0)
    assert [c[0] for c in tracker.curve] == [100, 350, 400] and tracker.eval_seconds == 3.0


def test_median_of_an_even_count_is_the_midpoint(cartpole):
    assert cartpole.median([2048.0, 4096.0]) == 3072.0


def test_run_ours_trains_on_the_budget_with_the_threads_and_evaluates_the_most_likely_action(cartpole, monkeypatch):
    """run_ours hands train_ppo the budget (its learning rate and clip anneal over it) and the
    thread count, and evaluates the argmax action."""
    seen = {}

    class Agent:
        def logits(self, obs):
            return torch.tensor([[0.1, 0.9], [0.8, 0.2]])

    def train_ppo(config, progress, callback):
        seen["config"] = config
        callback(Agent(), {"env_steps": 256})

    def deterministic_eval(act):
        seen["actions"] = act(np.zeros((2, 4))).tolist()
        return 10.0

    monkeypatch.setattr(cartpole, "train_ppo", train_ppo)
    monkeypatch.setattr(cartpole, "deterministic_eval", deterministic_eval)
    cartpole.run_ours(4, 256, 475.0, max_steps=2048, threads=2)
    assert seen["config"].total_timesteps == 2048 and seen["config"].torch_threads == 2
    assert seen["config"].seed == 4 and seen["actions"] == [1, 0]


def test_cartpole_refuses_eval_every_zero_and_uses_cpu_time_when_asked(cartpole, monkeypatch, capsys):
    import time

    monkeypatch.setattr(cartpole, "CLOCK", cartpole.CLOCK)  # main sets it: restored after
    monkeypatch.setattr(cartpole, "run_ours", lambda seed, eval_every, target, max_steps, **extra:
                        cartpole.Tracker(eval_every, target, 0.0))  # trains nothing
    with pytest.raises(SystemExit):  # a Tracker with eval_every 0 would loop forever
        cartpole.main(["--only", "ours", "--eval-every", "0"])
    assert "--eval-every at least 1" in capsys.readouterr().err
    assert cartpole.main(["--only", "ours", "--seeds", "0", "--budget", "512", "--eval-every", "256",
                          "--clock", "cpu"]) == 0
    assert cartpole.CLOCK is time.process_time
    capsys.readouterr()


def test_a_seed_that_never_solves_counts_as_infinitely_slow_in_the_medians(cartpole, monkeypatch, capsys):
    """Ours solves 1 of 3 seeds: its median over the 3 seeds is infinite (the two misses count
    as inf), not the median of its one success."""
    solved = {"ours": {0: (2048, 1.0, 0.2), 1: None, 2: None},
              "sb3": {0: (1024, 2.0, 0.5), 1: (1024, 2.0, 0.5), 2: (1024, 2.0, 0.5)}}

    def recorder(name):
        def run(seed, eval_every, target, max_steps, **extra):
            tracker = cartpole.Tracker(eval_every, target, 0.0)
            if target != float("inf"):  # not the warm-up
                tracker.solved_at = solved[name][seed]
            return tracker
        return run

    monkeypatch.setattr(cartpole, "run_ours", recorder("ours"))
    monkeypatch.setattr(cartpole, "run_sb3", recorder("sb3"))
    monkeypatch.setattr(cartpole, "CLOCK", cartpole.CLOCK)
    assert cartpole.main(["--seeds", "0", "1", "2", "--budget", "512", "--eval-every", "256"]) == 0
    out = capsys.readouterr().out
    assert "ours     solved 1/3 seeds; median env steps inf, median seconds inf" in out
    assert "ratio ours/SB3: n/a (ours solved 1/3 seeds, so its medians are infinite)" in out


# ================================================================== benchmarks/fullsize_gpt2.py
@pytest.fixture(scope="module")
def fullsize(load_benchmark):
    return load_benchmark("fullsize_gpt2.py")


def test_fullsize_context_check_allows_exactly_the_context_and_refuses_a_bool(fullsize):
    fullsize.step_config(8, 4, 2, prompt_words=8, max_new_tokens=1015)  # 8 + BOS + 1015 = 1024
    with pytest.raises(ValueError, match="1025 > the model's context of 1024"):
        fullsize.step_config(8, 4, 2, prompt_words=8, max_new_tokens=1016)
    with pytest.raises(ValueError, match="prompt_words must be an integer"):
        fullsize.step_config(8, 4, 2, prompt_words=True, max_new_tokens=16)


def test_fullsize_checks_the_context_of_the_model_it_builds(fullsize):
    """With a shrunken trunk of 64 positions, 60 words + BOS + 4 tokens do not fit: refused
    before the model is built, against its own context, not GPT-2's 1024."""
    with pytest.raises(ValueError, match="context of 64 positions"):
        fullsize.run(batch_size=2, mini_batch_size=2, ppo_epochs=1, prompt_words=60, max_new_tokens=4,
                     config_overrides={"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}, verbose=False)


def test_fullsize_memory_figures(fullsize):
    """The estimate printed is ppo_edu.rlhf.memory's total for the run's shapes (queries of
    prompt_words + 1 tokens, the BOS); the measured peak is above what the process held before,
    in GiB (VmHWM is kB; statm's second field is the resident pages)."""
    from ppo_edu.rlhf.memory import estimate_ppo_memory

    result = fullsize.run(batch_size=4, mini_batch_size=2, ppo_epochs=1, prompt_words=4, max_new_tokens=4,
                          config_overrides={"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}, verbose=False)
    estimate = estimate_ppo_memory(n_layer=1, n_embd=32, n_head=2, vocab_size=50258, n_positions=64, batch_size=4,
                                   mini_batch_size=2, query_length=5, response_length=4)
    assert result["estimate_gib"] == pytest.approx(estimate[-1][1])
    current, peak = fullsize.current_rss_gib(), fullsize.peak_rss_gib()
    assert 0.05 < current <= peak + 0.01 < 64  # ru_maxrss can lag the resident size by a few pages
    assert 0 <= result["peak_gib"] < peak - 0.05  # minus the RSS before the models were built


def test_fullsize_peak_is_this_runs_not_an_earlier_one_in_the_process(fullsize):
    """An earlier, larger peak in the same process (a test suite, a notebook) is not this run's:
    ru_maxrss never comes down, and reported the half GiB allocated and freed here."""
    big = torch.ones(128 * 1024 * 1024)  # 0.5 GiB, touched, then freed
    del big
    result = fullsize.run(batch_size=2, mini_batch_size=2, ppo_epochs=1, prompt_words=4, max_new_tokens=4,
                          config_overrides={"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}, verbose=False)
    assert 0 <= result["peak_gib"] < 0.25


def test_fullsize_without_proc_falls_back_to_ru_maxrss(fullsize, monkeypatch, tmp_path, capsys):
    """macOS has no /proc: the peak is then the rise of ru_maxrss, said so, not a crash; with
    no resource module either (Windows) it is None and the output says it was not measured."""
    monkeypatch.setattr(fullsize, "PROC", tmp_path / "no-proc")
    assert fullsize.reset_peak_rss() is False and fullsize.current_rss_gib() is None
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert fullsize.peak_rss_gib() == pytest.approx(kb / 1024 ** 2, rel=0.01)
    tiny = dict(batch_size=2, mini_batch_size=2, ppo_epochs=1, prompt_words=4, max_new_tokens=4,
                config_overrides={"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64})
    result = fullsize.run(**tiny)
    assert result["peak_method"] == "ru_maxrss" and 0 <= result["peak_gib"] < 1
    assert "ru_maxrss: no /proc to reset it" in capsys.readouterr().out
    monkeypatch.setattr(fullsize, "resource", None)
    result = fullsize.run(**tiny)
    assert result["peak_gib"] is None and result["peak_method"] is None
    assert "peak memory: not measured" in capsys.readouterr().out


def test_fullsize_step_config_passes_the_step_shapes(fullsize):
    cfg = fullsize.step_config(16, 4, 3, prompt_words=8, max_new_tokens=12)
    assert (cfg.batch_size, cfg.mini_batch_size, cfg.ppo_epochs, cfg.max_new_tokens) == (16, 4, 3, 12)
