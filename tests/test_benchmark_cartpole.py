"""The command line of ``benchmarks/cartpole.py``: what both libraries are asked to do, and
what is refused before anything trains."""

import re

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("cartpole.py")


@pytest.fixture
def calls(bench, monkeypatch):
    """Replaces both runners by a recorder that trains nothing."""
    made = []

    def recorder(name):
        def run(seed, eval_every, target, max_steps, **extra):
            made.append((name, seed, eval_every, target, max_steps))
            return bench.Tracker(eval_every, target, 0.0)
        return run

    monkeypatch.setattr(bench, "run_ours", recorder("ours"))
    monkeypatch.setattr(bench, "run_sb3", recorder("sb3"))
    return made


def test_the_budget_is_whole_rollouts_for_both_and_seeds_are_passed_as_given(bench, calls, capsys):
    assert bench.main(["--seeds", "3", "0", "--budget", "767", "--eval-every", "256"]) == 0
    timed = [c for c in calls if c[3] != float("inf")]  # after the two untimed warm-ups
    # 767 was 2 rollouts for ours and 3 for SB3 (it runs until it reaches the budget)
    assert timed == [("ours", 3, 256, 475.0, 512), ("sb3", 3, 256, 475.0, 512),
                     ("ours", 0, 256, 475.0, 512), ("sb3", 0, 256, 475.0, 512)]
    assert "budget 512 env steps" in capsys.readouterr().out


def test_sb3_epochs_reach_sb3_and_only_sb3(bench, monkeypatch, capsys):
    seen = {}

    def record(name):
        def run(seed, eval_every, target, max_steps, **extra):
            seen.setdefault(name, []).append(extra)
            return bench.Tracker(eval_every, target, 0.0)
        return run

    monkeypatch.setattr(bench, "run_ours", record("ours"))
    monkeypatch.setattr(bench, "run_sb3", record("sb3"))
    assert bench.main(["--seeds", "0", "--budget", "512", "--eval-every", "256", "--sb3-epochs", "10"]) == 0
    assert seen["sb3"][-1] == {"n_epochs": 10} and "n_epochs" not in seen["ours"][-1]
    assert "SB3 epochs 10 (ours 10)" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0", "-1"], "--seeds must be distinct and >= 0"),  # -1 ran as seed 0
    (["--seeds", "1", "1"], "--seeds must be distinct and >= 0"),  # counted twice in the medians
    (["--target", "600"], "--target must be in (0, 500]"),  # could never be reached
    (["--target", "nan"], "--target must be in (0, 500]"),
    (["--budget", "512", "--eval-every", "1024"], "nothing would be evaluated"),  # best eval nan
    (["--threads", "0"], "--threads must be >= 1"),
    (["--budget", "100"], "at least one rollout"),
    (["--sb3-epochs", "0"], "--sb3-epochs must be >= 1"),
])
def test_bad_arguments_are_refused_before_anything_trains(bench, calls, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "ours", *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert calls == []


def _solving(bench, monkeypatch, solved_at):
    """Runners that train nothing and report ``solved_at[name]`` (None: never solved)."""
    def recorder(name):
        def run(seed, eval_every, target, max_steps, **extra):
            tracker = bench.Tracker(eval_every, target, 0.0)
            if target != float("inf"):  # not the warm-up
                tracker.solved_at = solved_at[name]
            return tracker
        return run

    monkeypatch.setattr(bench, "run_ours", recorder("ours"))
    monkeypatch.setattr(bench, "run_sb3", recorder("sb3"))
    monkeypatch.setattr(bench, "CLOCK", bench.CLOCK)  # main sets it from --clock: restored after


def _ratio_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("ratio ours/SB3"))


@pytest.mark.parametrize("clock, name", [("wall", "wall-clock"), ("cpu", "CPU time")])
def test_the_ratio_line_names_the_clock_it_used(bench, monkeypatch, capsys, clock, name):
    _solving(bench, monkeypatch, {"ours": (2048, 1.0, 0.2), "sb3": (4096, 4.0, 0.5)})
    assert bench.main(["--seeds", "0", "--budget", "512", "--eval-every", "256", "--clock", clock]) == 0
    # under --clock cpu it said "wall-clock" for a ratio of CPU times
    assert _ratio_line(capsys.readouterr().out) == (
        f"ratio ours/SB3: env steps 0.50, {name} 0.25 (0.23 without the evaluations)")


@pytest.mark.parametrize("solved_at, says", [
    ({"ours": (2048, 1.0, 0.2), "sb3": None}, "SB3 solved 0/2 seeds, so its medians are infinite"),
    ({"ours": None, "sb3": (2048, 1.0, 0.2)}, "ours solved 0/2 seeds, so its medians are infinite"),
    ({"ours": None, "sb3": None}, "ours solved 0/2 seeds and SB3 solved 0/2 seeds, so the medians of both"),
])
def test_no_ratio_is_printed_for_an_infinite_median(bench, monkeypatch, capsys, solved_at, says):
    _solving(bench, monkeypatch, solved_at)
    assert bench.main(["--seeds", "0", "1", "--budget", "512", "--eval-every", "256"]) == 0
    line = _ratio_line(capsys.readouterr().out)
    # was "env steps 0.00, wall-clock 0.00" (SB3 never solved), "inf" (ours), "nan" (neither)
    assert line.startswith("ratio ours/SB3: n/a (") and says in line
    assert not re.search(r"0\.00|\binf\b|\bnan\b", line)
