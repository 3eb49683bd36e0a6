"""``benchmarks/best_of_n.py`` end to end on the shipped tiny models, with a handful of samples."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its setup from benchmarks/rlhf.py
    spec = importlib.util.spec_from_file_location("bench_best_of_n", BENCHMARKS / "best_of_n.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_a_best_of_n_table_whose_reward_grows_with_n(bench, capsys):
    assert bench.main(["--samples", "6", "--eval-prompts", "8", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "8 evaluation prompts (seed 0), 6 samples each" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in {"1", "2", "4", "6"}]
    assert [r[0] for r in rows] == ["1", "2", "4", "6"]  # powers of two, then --samples itself
    kl_bounds, gains = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
    assert kl_bounds == [0.0, 0.19, 0.64, 0.96]
    assert gains[0] == 0.0 and gains[0] < gains[1] < gains[2] < gains[3]  # picking the best raises the score
    assert "offline targets" in out and "up to 6" in out


def test_refuses_no_samples(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--samples", "0"])
    assert exc.value.code == 2
    assert "error: --samples must be >= 1" in capsys.readouterr().err  # not any usage error


@pytest.mark.parametrize("flags, message", [
    (["--eval-prompts", "-1045"], "--eval-prompts must be in 1..1050"),  # ran on 6 prompts
    (["--threads", "0"], "--threads must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_refuses_prompt_counts_threads_and_seeds_before_loading(bench, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        bench.main(flags)
    assert exc.value.code == 2 and message in capsys.readouterr().err
