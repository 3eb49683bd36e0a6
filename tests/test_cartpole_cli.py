"""The terminal entry point: python -m ppo_edu.cartpole."""

from __future__ import annotations

import json
import subprocess
import sys

from ppo_edu.cartpole import main
from ppo_edu.ppo import PPOConfig, load_checkpoint


def test_cli_trains_evaluates_and_writes_png_checkpoint_and_history(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--seed", "3", "--steps", "512", "--output", str(out), "--eval-episodes", "2",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "deterministic evaluation over 2 episodes" in printed
    png = (out / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    _agent, config = load_checkpoint(out / "agent.safetensors")
    assert config == PPOConfig(seed=3, total_timesteps=512)
    record = json.loads((out / "history.json").read_text(), parse_constant=_refuse)  # strict JSON
    assert len(record["history"]) == 2 and len(record["evaluation"]["returns"]) == 2
    assert not (out / "best_agent.safetensors").exists()  # --eval-every 2048 > 512: none during training
    assert record["evaluations"] == []


def test_cli_keeps_the_best_agent_of_the_evaluations_during_training(tmp_path, capsys):
    from ppo_edu.evaluate import evaluate

    out = tmp_path / "run"
    assert main(["--seed", "3", "--steps", "1024", "--output", str(out), "--eval-episodes", "3",
                 "--eval-every", "256", "--no-progress"]) == 0
    assert "best evaluation during training" in capsys.readouterr().out
    record = json.loads((out / "history.json").read_text())
    means = [e["mean"] for e in record["evaluations"]]
    assert [e["env_steps"] for e in record["evaluations"]] == [256, 512, 768, 1024]
    best, _ = load_checkpoint(out / "best_agent.safetensors")
    assert evaluate(best, episodes=3).mean == max(means)


def test_cli_rejects_a_negative_evaluation_interval_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--eval-every", "-1", "--output", str(out), "--no-progress"]) == 2
    assert "--eval-every must be >= 0" in capsys.readouterr().err
    assert not out.exists()


def _refuse(constant):
    raise ValueError(f"history.json holds {constant}, which strict JSON parsers reject")


def test_history_without_an_episode_end_is_written_as_null():
    from ppo_edu.cartpole import _nan_to_none

    record = {"history": [{"episode_return": float("nan"), "approx_kl": 0.01}],
              "x": (1.0, float("inf"))}
    assert _nan_to_none(record) == {"history": [{"episode_return": None, "approx_kl": 0.01}],
                                    "x": [1.0, None]}
    json.dumps(_nan_to_none(record), allow_nan=False)


def test_cli_rejects_zero_evaluation_episodes_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--eval-episodes", "0", "--output", str(out), "--no-progress"]) == 2
    assert "--eval-episodes must be >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()  # nothing trained, nothing written


def test_cli_rejects_an_invalid_budget(tmp_path, capsys):
    assert main(["--steps", "10", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "total_timesteps" in capsys.readouterr().err


def test_module_help_runs():
    result = subprocess.run([sys.executable, "-m", "ppo_edu.cartpole", "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    for flag in ("--seed", "--steps", "--output"):
        assert flag in result.stdout
