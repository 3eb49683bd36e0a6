"""The terminal entry point: python -m ppo_edu.cartpole."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

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


def test_cli_keeps_the_best_agent_of_the_evaluations_during_training(tmp_path, capsys,
                                                                     monkeypatch):
    import ppo_edu.evaluate as module
    from ppo_edu.evaluate import EvalResult

    # evaluations during training score 5, 9, 3, 2 (the best is the second), then the final one
    scripted = iter([5.0, 9.0, 3.0, 2.0, 2.0])
    monkeypatch.setattr(module, "evaluate",
                        lambda agent, episodes, **kw: EvalResult(next(scripted), 0.0, [0.0] * episodes))
    out = tmp_path / "run"
    out.mkdir()
    (out / "best_agent.safetensors").write_bytes(b"an earlier run's")
    assert main(["--seed", "3", "--steps", "1024", "--output", str(out), "--eval-episodes", "3",
                 "--eval-every", "256", "--no-progress"]) == 0
    assert "best evaluation during training: 9.0 after 512 env steps" in capsys.readouterr().out
    record = json.loads((out / "history.json").read_text())
    assert record["evaluations"] == [{"env_steps": 256, "mean": 5.0}, {"env_steps": 512, "mean": 9.0},
                                     {"env_steps": 768, "mean": 3.0}, {"env_steps": 1024, "mean": 2.0}]
    best, _ = load_checkpoint(out / "best_agent.safetensors")
    final, _ = load_checkpoint(out / "agent.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(best.state_dict().values(),
                                                     final.state_dict().values()))


def test_cli_history_json_records_the_config_it_trained_with(tmp_path, capsys):
    """history.json alone must say how the run was made (seed, budget and every other field)."""
    out = tmp_path / "run"
    assert main(["--seed", "5", "--steps", "256", "--output", str(out), "--eval-episodes", "1",
                 "--eval-every", "0", "--no-progress"]) == 0
    record = json.loads((out / "history.json").read_text())
    assert PPOConfig(**record["config"]) == PPOConfig(seed=5, total_timesteps=256)


def test_cli_evaluates_with_eval_episodes_during_training_as_well_as_after(tmp_path, capsys,
                                                                           monkeypatch):
    """--eval-episodes sets the evaluations during training too, not only the final one."""
    import ppo_edu.evaluate as module
    from ppo_edu.evaluate import EvalResult

    asked = []

    def fake_evaluate(agent, episodes, **kw):
        asked.append(episodes)
        return EvalResult(1.0, 0.0, [1.0] * episodes)

    monkeypatch.setattr(module, "evaluate", fake_evaluate)
    assert main(["--steps", "512", "--output", str(tmp_path / "run"), "--eval-episodes", "3",
                 "--eval-every", "256", "--no-progress"]) == 0
    assert asked == [3, 3, 3]  # after 256 and 512 env steps, then the final evaluation


def test_cli_without_evaluations_removes_an_earlier_best_agent(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best_agent.safetensors").write_bytes(b"an earlier run's")
    assert main(["--steps", "512", "--output", str(out), "--eval-episodes", "2", "--eval-every", "0",
                 "--no-progress"]) == 0
    assert "no best agent" in capsys.readouterr().out
    assert not (out / "best_agent.safetensors").exists()


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


def test_cli_defaults_are_the_config_defaults_and_twenty_evaluation_episodes():
    """With no flags the CLI trains PPOConfig's defaults (seed 0, its budget), as the docstring says."""
    from pathlib import Path

    from ppo_edu.cartpole import parse_args

    args = parse_args([])
    defaults = PPOConfig()
    assert (args.seed, args.steps) == (defaults.seed, defaults.total_timesteps)
    assert (args.eval_episodes, args.eval_every) == (20, 2048)
    assert args.output == Path("runs/cartpole") and args.no_progress is False


def test_module_help_runs():
    result = subprocess.run([sys.executable, "-m", "ppo_edu.cartpole", "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    for flag in ("--seed", "--steps", "--output"):
        assert flag in result.stdout
