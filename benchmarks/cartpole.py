"""Our PPO vs Stable-Baselines3 PPO on CartPole-v1: env steps and wall-clock to "solved".

    python benchmarks/cartpole.py            # 5 seeds each (needs the `bench` extra:
                                             #   pip install -e ".[bench]")
    python benchmarks/cartpole.py --seeds 0 1 --only ours

Both libraries are trained on the same seeds and evaluated with the *same* function
(``deterministic_eval`` below): every ``--eval-every`` env steps, 20 episodes with the
most likely action, on the same 20 start states. For each seed the table gives the env
steps and the wall-clock seconds (counted from building the envs and the model, and
including every evaluation; "of which eval" is the evaluations' share) until the
evaluation mean first reaches ``--target``. Training stops there, or at ``--budget`` env
steps (100,000 unless told). Each library first does one short untimed run (warm-up), so
neither pays the process's one-time start-up costs. Seeds run interleaved (ours, SB3,
ours, ...), so load from other work on the machine falls on both alike; ``--clock cpu``
counts this process's CPU time instead of wall-clock.

"First reaches" depends on how often one looks: a policy can pass 475 between two
evaluations and fall back. Compare runs only at the same ``--eval-every``.

Stable-Baselines3 runs rl-baselines3-zoo's tuned CartPole-v1 hyperparameters
(8 envs, n_steps 32, batch 256, 20 epochs, gamma 0.98, lambda 0.8, ent 0, linear
lr 1e-3, linear clip 0.2). Ours runs ``PPOConfig()``'s defaults, which make 10 passes over
each rollout at lr 3e-3: SB3 takes twice ours' gradient steps per rollout, so the
wall-clock ratio mixes the two libraries' speed with their settings' work
(``--sb3-epochs 10`` gives SB3 ours' count of passes). The value losses differ too: ours
clips the value change (by 0.2, annealed with the policy's clip range) and weights the
squared error 0.25 (a factor 1/2 times ``value_coef`` 0.5); SB3's is unclipped
(``clip_range_vf=None``) and weighted 0.5 (``vf_coef`` times ``F.mse_loss``). Actor and
critic are separate networks on both sides, but the gradient norm is clipped at 0.5 over
both together, so the critic's share of that norm also sizes the actor's step. Both get the same
budget (``--budget``, rounded down to whole rollouts of 256 env steps, the rollout size of
both), over which both anneal their learning rate and clip range linearly (SB3's
schedules follow ``learn(total_timesteps)``, ours ``total_timesteps``).
Both use one torch thread (``--threads``), which is faster than more threads for these
tiny networks, for both.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from ppo_edu.ppo import PPOConfig, train_ppo

MAX_STEPS = 100_000
ROLLOUT = 256  # env steps per rollout, both: 8 envs x 32 steps
CARTPOLE_MAX_RETURN = 500.0  # CartPole-v1 truncates episodes at 500 steps
CLOCK = time.perf_counter  # --clock cpu switches to this process's CPU time


def deterministic_eval(act: Callable[[np.ndarray], np.ndarray], episodes: int = 20,
                       seed: int = 10_000) -> float:
    """Mean return of ``episodes`` CartPole-v1 episodes acting with ``act(observations) ->
    actions``; episode i starts from ``reset(seed=seed + i)``.

    The protocol of ``ppo_edu.evaluate.evaluate`` (same start states, same returns), written
    to step only the episodes still running: an evaluation costs what its episodes cost.
    """
    envs = [gym.make("CartPole-v1") for _ in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
        returns = np.zeros(episodes)
        running = np.arange(episodes)
        while running.size:
            actions = act(obs[running])
            still = []
            for i, action in zip(running, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
                returns[i] += reward
                if not (terminated or truncated):
                    still.append(i)
            running = np.array(still, dtype=int)
    finally:
        for env in envs:
            env.close()
    return float(returns.mean())


class Tracker:
    """Evaluates every ``eval_every`` env steps; records when the target is first reached."""

    def __init__(self, eval_every: int, target: float, start: float):
        self.eval_every, self.target, self.start = eval_every, target, start
        self.next_eval = eval_every
        self.eval_seconds = 0.0
        self.solved_at: tuple[int, float, float] | None = None  # steps, seconds, eval seconds
        self.curve: list[tuple[int, float, float]] = []

    def maybe_eval(self, env_steps: int, act) -> bool:
        """Evaluate if due; True once the target is reached (the caller then stops)."""
        if env_steps < self.next_eval:
            return False
        while self.next_eval <= env_steps:
            self.next_eval += self.eval_every
        before = CLOCK()
        mean = deterministic_eval(act)
        now = CLOCK()
        self.eval_seconds += now - before
        self.curve.append((env_steps, now - self.start, mean))
        if mean >= self.target and self.solved_at is None:
            self.solved_at = (env_steps, now - self.start, self.eval_seconds)
        return self.solved_at is not None


def run_ours(seed: int, eval_every: int, target: float, max_steps: int = MAX_STEPS,
             threads: int = 1) -> Tracker:
    # The same budget as SB3's learn(total_timesteps=max_steps): both anneal the learning
    # rate and the clip range over it. (PPOConfig's own 60k anneals sooner; over seeds
    # 0-19, evaluated every 2,048 steps, its first solve came at a median of 8k env steps
    # against 12k with 100k, measured 2026-12-03.)
    # train_ppo sets its own thread count from the config: --threads must reach it
    config = PPOConfig(seed=seed).replace(total_timesteps=max_steps, torch_threads=threads)
    assert config.batch_size == ROLLOUT
    tracker = Tracker(eval_every, target, CLOCK())

    def callback(agent, record) -> bool:
        @torch.no_grad()
        def act(obs):  # the most likely action, as agent.act(obs, deterministic=True) takes it
            return agent.logits(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()
        return tracker.maybe_eval(record["env_steps"], act)

    train_ppo(config, progress=False, callback=callback)
    return tracker


def run_sb3(seed: int, eval_every: int, target: float, max_steps: int = MAX_STEPS,
            n_epochs: int = 20) -> Tracker:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(start: float):
        return lambda progress_remaining: progress_remaining * start

    tracker = Tracker(eval_every, target, CLOCK())

    class EvalCallback(BaseCallback):
        # The policy changes only in train(), which runs between rollouts; evaluating at a
        # rollout's start is evaluating the latest update, as the callback of ours does.
        def _act(self, obs):
            return self.model.predict(obs, deterministic=True)[0]

        def _on_rollout_start(self) -> None:
            if tracker.maybe_eval(self.num_timesteps, self._act):
                self.model._stop_training = True

        def _on_step(self) -> bool:
            return not getattr(self.model, "_stop_training", False)

        def _on_training_end(self) -> None:
            tracker.maybe_eval(self.num_timesteps, self._act)

    envs = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", envs, n_steps=32, batch_size=256, n_epochs=n_epochs, gamma=0.98,
                gae_lambda=0.8, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
                seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=max_steps, callback=EvalCallback())
    envs.close()
    return tracker


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-every", type=int, default=2048,
                        help="env steps between evaluations (default 2048)")
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--budget", type=int, default=MAX_STEPS,
                        help="env steps each run trains for at most, and over which both "
                             f"anneal their learning rate and clip range (default {MAX_STEPS:,})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both)")
    parser.add_argument("--only", choices=["ours", "sb3"], default=None)
    parser.add_argument("--sb3-epochs", type=int, default=20,
                        help="SB3's passes over each rollout (rl-zoo's 20, the default); ours makes "
                             "PPOConfig()'s 10, so 10 here compares the libraries at equal work")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock (default) or this process's CPU time, steadier on a "
                             "machine shared with other work")
    args = parser.parse_args(argv)
    if args.budget < ROLLOUT or args.eval_every < 1:
        parser.error(f"--budget must be at least one rollout ({ROLLOUT} env steps) and --eval-every "
                     f"at least 1; got {args.budget} and {args.eval_every}")
    # whole rollouts: ours trains budget // 256 of them, SB3 runs until it reaches the budget
    # (without the rounding, one more partial rollout, annealed past zero), so both get the
    # same multiple of 256
    args.budget -= args.budget % ROLLOUT
    if args.eval_every > args.budget:
        parser.error(f"--eval-every {args.eval_every} is more than the budget of {args.budget} env "
                     "steps: nothing would be evaluated")
    if not 0 < args.target <= CARTPOLE_MAX_RETURN:
        parser.error(f"--target must be in (0, {CARTPOLE_MAX_RETURN:g}] (CartPole-v1's episodes end at "
                     f"500 steps), got {args.target}")
    if any(seed < 0 for seed in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct and >= 0 (a repeat would count one run twice in the "
                     f"medians), got {args.seeds}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.sb3_epochs < 1:
        parser.error(f"--sb3-epochs must be >= 1, got {args.sb3_epochs}")
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time

    runners = {"ours": run_ours, "sb3": run_sb3}
    if args.only:
        runners = {args.only: runners[args.only]}
    # Untimed warm-up: the first run in a process pays for lazy imports and first-call
    # initialisation, which would otherwise count against whichever library runs first.
    for run in runners.values():
        run(0, ROLLOUT, float("inf"), max_steps=2 * ROLLOUT)
    results: dict[str, list[Tracker]] = {name: [] for name in runners}
    print(f"CartPole-v1, eval every {args.eval_every} env steps (20 deterministic episodes), "
          f"target mean >= {args.target:g}, budget {args.budget:,} env steps, "
          f"torch threads {args.threads}, {args.clock} clock, SB3 epochs {args.sb3_epochs} (ours "
          f"{PPOConfig().update_epochs})")
    print(f"{'library':<8} {'seed':>4} {'env steps':>10} {'seconds':>8} {'of which eval':>13} "
          f"{'evals':>6} {'best eval':>9}")
    for seed in args.seeds:
        for name, run in runners.items():
            extra = {"threads": args.threads} if name == "ours" else {"n_epochs": args.sb3_epochs}
            tracker = run(seed, args.eval_every, args.target, max_steps=args.budget, **extra)
            results[name].append(tracker)
            steps, seconds, eval_seconds = tracker.solved_at or (None, None, None)
            best = max((m for _, _, m in tracker.curve), default=float("nan"))
            print(f"{name:<8} {seed:>4} {steps if steps else '-':>10} "
                  f"{f'{seconds:.2f}' if seconds else '-':>8} "
                  f"{f'{eval_seconds:.2f}' if seconds else '-':>13} {len(tracker.curve):>6} "
                  f"{best:>9.1f}", flush=True)

    print()
    medians, solved_of = {}, {}
    for name, trackers in results.items():
        solved = [t.solved_at for t in trackers if t.solved_at]
        # a seed that never reaches the target counts as infinitely slow in the medians
        missing = [float("inf")] * (len(trackers) - len(solved))
        steps = median([s[0] for s in solved] + missing)
        seconds = median([s[1] for s in solved] + missing)
        training = median([s[1] - s[2] for s in solved] + missing)
        medians[name], solved_of[name] = (steps, seconds, training), f"{len(solved)}/{len(trackers)}"
        print(f"{name:<8} solved {solved_of[name]} seeds; median env steps "
              f"{steps:,.0f}, median seconds {seconds:.2f} ({training:.2f} without the evaluations)")
    if len(medians) == 2:
        print(ratio_line(medians, solved_of, args.clock))
    return 0


def ratio_line(medians: dict[str, tuple[float, float, float]], solved_of: dict[str, str],
               clock: str) -> str:
    """Ours / SB3 for the medians' env steps and seconds, named by the clock the seconds are
    on; no ratio where a median is infinite (at least half the seeds never reached the
    target): a ratio of 0.00 or inf would read as a speed."""
    ours, sb3 = medians["ours"], medians["sb3"]
    unreached = [f"{label} solved {solved_of[name]} seeds"
                 for name, label in (("ours", "ours"), ("sb3", "SB3"))
                 if not all(map(math.isfinite, medians[name]))]
    if unreached:  # a seed that never reaches the target counts as infinitely slow
        return (f"ratio ours/SB3: n/a ({' and '.join(unreached)}, so "
                f"{'its medians are' if len(unreached) == 1 else 'the medians of both are'} infinite)")
    seconds = "wall-clock" if clock == "wall" else "CPU time"
    return (f"ratio ours/SB3: env steps {ours[0] / sb3[0]:.2f}, {seconds} {ours[1] / sb3[1]:.2f} "
            f"({ours[2] / sb3[2]:.2f} without the evaluations)")


if __name__ == "__main__":
    sys.exit(main())
