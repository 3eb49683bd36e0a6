"""Train PPO on CartPole-v1 from the terminal.

    python -m ppo_edu.cartpole                       # PPOConfig's defaults, seed 0
    python -m ppo_edu.cartpole --seed 3 --steps 100000 --output runs/seed3

Trains with a progress bar, evaluates the agent every ``--eval-every`` env steps and at the
end (deterministic, 20 episodes), and writes to ``--output``: ``learning_curve.png`` (the PPO
dashboard, with the evaluations), ``agent.safetensors`` (the final agent; reload with
``ppo_edu.ppo.load_checkpoint``), ``best_agent.safetensors`` (the agent of the best evaluation
during training, which is not always the final one: see ``ppo_edu.evaluate.EvalTracker``) and
``history.json`` (one record per update, and the evaluations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from ppo_edu.ppo import PPOConfig, save_checkpoint, train_ppo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = PPOConfig()
    parser = argparse.ArgumentParser(
        prog="python -m ppo_edu.cartpole",
        description="Train PPO on CartPole-v1, evaluate it and plot its learning curve.")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults.total_timesteps,
                        help="env steps to train for (default %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("runs/cartpole"),
                        help="folder for the PNG, the checkpoint and the history (default %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="episodes of each deterministic evaluation, during and after training "
                             "(default %(default)s)")
    parser.add_argument("--eval-every", type=int, default=2048,
                        help="evaluate during training every this many env steps and keep the best "
                             "agent; 0 turns it off (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    from ppo_edu.evaluate import EvalTracker, evaluate
    from ppo_edu.plots import plot_evaluations, plot_history

    try:
        config = PPOConfig(seed=args.seed, total_timesteps=args.steps)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.eval_episodes < 1:  # here, not after minutes of training
        print(f"error: --eval-episodes must be >= 1, got {args.eval_episodes}", file=sys.stderr)
        return 2
    if args.eval_every < 0:
        print(f"error: --eval-every must be >= 0 (0: no evaluation during training), got "
              f"{args.eval_every}", file=sys.stderr)
        return 2
    try:  # the output folder too: a bad --output found after training loses the agent
        args.output.mkdir(parents=True, exist_ok=True)
        if not os.access(args.output, os.W_OK):
            raise PermissionError(f"{args.output} is not writable")
    except OSError as exc:
        print(f"error: cannot write to --output {args.output}: {exc}", file=sys.stderr)
        return 2
    tracker = EvalTracker(every=args.eval_every, episodes=args.eval_episodes) if args.eval_every else None
    agent, history = train_ppo(config, progress=not args.no_progress, callback=tracker)
    result = evaluate(agent, episodes=args.eval_episodes)
    seconds = history[-1]["wall_time"]
    print(f"trained {history[-1]['env_steps']:,} env steps in {seconds:.1f} s; deterministic "
          f"evaluation over {args.eval_episodes} episodes: {result.mean:.1f} +- {result.std:.1f}")
    evaluations = tracker.evals if tracker else []
    best_checkpoint = []
    if evaluations:
        best_checkpoint.append(save_checkpoint(args.output / "best_agent.safetensors",
                                               tracker.best_agent, config))
        print(f"best evaluation during training: {tracker.best_mean:.1f} after "
              f"{tracker.best_steps:,} env steps ({len(evaluations)} evaluations, every "
              f"{args.eval_every:,} env steps)")
    else:  # a best agent left from an earlier run would sit beside this run's files
        (args.output / "best_agent.safetensors").unlink(missing_ok=True)
        print("no evaluation during training (--eval-every is 0 or beyond --steps): no best agent")

    fig = plot_history(history)
    if evaluations:
        plot_evaluations(fig.axes[0], evaluations)
    best = f", best during training {tracker.best_mean:.0f}" if evaluations else ""
    fig.suptitle(f"PPO on CartPole-v1 (seed {args.seed}): final evaluation {result.mean:.0f}{best}")
    png = args.output / "learning_curve.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    checkpoint = save_checkpoint(args.output / "agent.safetensors", agent, config)
    record = {"config": config.__dict__, "evaluation": result._asdict(),
              "evaluations": [{"env_steps": steps, "mean": mean} for steps, mean in evaluations],
              "history": history}
    # strict JSON: a rollout in which no episode ended has no return (NaN), written as null
    text = json.dumps(_nan_to_none(record), indent=1, allow_nan=False)
    (args.output / "history.json").write_text(text)
    written = ", ".join(str(path) for path in [png, checkpoint, *best_checkpoint])
    print(f"wrote {written} and {args.output / 'history.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
