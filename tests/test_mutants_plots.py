"""Tests written in a mutation-testing audit of the plot, figure, animation, CLI and rollout code.

Each test pins something the other tests left open, so that a plausible bug there (a figure
that draws the wrong numbers, an argument not passed on, an episode counted wrongly) fails
a test. Each docstring says which bug it catches. Every plot is read back from its
matplotlib objects and compared with numbers worked out by hand.
"""

from __future__ import annotations

import json
import time

import matplotlib

matplotlib.use("Agg")

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ppo_edu import animation, figures
from ppo_edu.agents import ActorCritic
from ppo_edu.lm.plots import accuracy_by_gap, plot_rm_history, plot_sft_history
from ppo_edu.plots import column, plot_history, plot_runs, smoothed
from ppo_edu.rollout import RolloutCollector, make_cartpole_envs

NAN = float("nan")


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------- ppo_edu.plots


def test_smoothed_refuses_a_boolean_window():
    """Catches a window check that lets True through as a window of 1 (bool is an int)."""
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        smoothed([1.0, 2.0, 3.0], True)


def test_plot_history_and_plot_runs_smooth_over_five_updates_by_default():
    """Catches a changed default: the CLI's learning curve and the lessons' dashboards
    call these without ``smooth`` and show a 5-update trailing mean."""
    returns = [0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 20.0]
    history = [{"env_steps": 100 * (i + 1), "episode_return": r} for i, r in enumerate(returns)]
    fig = plot_history(history, keys=["episode_return"], ncols=1)
    # trailing means of 5: ..., (0+0+0+0+10)/5 = 2, (0+0+0+10+20)/5 = 6
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0, 0, 0, 0, 0, 2.0, 6.0])
    ax = plot_runs({"PPO": [history]})
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 0, 0, 0, 0, 2.0, 6.0])


def test_plot_history_refuses_an_empty_history_by_name():
    """Catches a missing empty-history check (the error then blamed a missing 'env_steps')."""
    with pytest.raises(ValueError, match="the history is empty"):
        plot_history([])


def test_plot_runs_checks_every_run_for_the_key_and_names_an_empty_run():
    """Catches plot_runs checking only the first run of a group: a run with a misspelt or
    missing metric was drawn as an all-NaN row and silently dropped from the median and band.
    Also catches the group-level check missing a run with no history."""
    good = [{"env_steps": 100, "approx_kl": 0.01}, {"env_steps": 200, "approx_kl": 0.02}]
    other = [{"env_steps": 100, "approx_kI": 0.03}, {"env_steps": 200, "approx_kI": 0.04}]
    with pytest.raises(KeyError, match="no record of the history has 'approx_kl'"):
        plot_runs({"PPO": [good, other]}, "approx_kl", smooth=1)
    with pytest.raises(ValueError, match="group 'PPO' has no runs, or a run with no history"):
        plot_runs({"PPO": [good, []]}, "approx_kl", smooth=1)


# ---------------------------------------------------------------- ppo_edu.lm.plots


def test_sft_mean_line_is_one_point_when_there_are_exactly_window_steps():
    """Catches an off-by-one in the smoothing helper: with as many steps as the window it
    returned the raw losses and drew them as the 'window-step mean'."""
    history = [{"step": i + 1, "loss": v} for i, v in enumerate([4.0, 3.0, 2.0, 1.0])]
    ax = plot_sft_history(history, window=4)
    _, mean = ax.lines
    assert list(mean.get_xdata()) == [4] and list(mean.get_ydata()) == [2.5]
    fig = plot_rm_history([{"step": s, "loss": v, "batch_accuracy": a}
                           for s, v, a in [(1, 0.9, 0.4), (2, 0.5, 0.8)]], window=2)
    _, mean, _ = fig.axes[0].lines
    assert list(mean.get_xdata()) == [2] and mean.get_ydata()[0] == pytest.approx(0.7)


def test_sft_history_draws_a_perplexity_measured_at_the_first_step():
    """Catches the held-out perplexity of the first record being left out (eval_every=1
    measures it at step 1)."""
    history = [{"step": i + 1, "loss": 2.0, "eval_ppl": p} for i, p in enumerate([50.0, 30.0, 20.0])]
    ax = plot_sft_history(history, window=2)
    (twin,) = [other for other in ax.figure.axes if other is not ax]
    assert list(twin.lines[0].get_xdata()) == [1, 2, 3]
    assert list(twin.lines[0].get_ydata()) == [50.0, 30.0, 20.0]


def test_plot_rm_history_draws_a_baseline_of_zero():
    """Catches ``if baseline:`` for ``if baseline is not None:``: a baseline of 0.0 was dropped."""
    history = [{"step": i + 1, "loss": 0.7, "batch_accuracy": 0.5} for i in range(3)]
    _, acc_ax = plot_rm_history(history, baseline=0.0, window=2).axes
    assert legend_labels(acc_ax)[-1] == "VADER (held-out)"
    assert acc_ax.lines[-1].get_ydata()[0] == 0.0


def test_accuracy_by_gap_counts_each_unordered_pair_once():
    """Catches a wrong pair count in each gap bin (e.g. counting (i, j) and (j, i))."""
    ratings = [0.0, 1.0, 2.5, 4.0]  # gaps: 1 | 1.5, 1.5 | 2.5 | 3 | 4
    rows = accuracy_by_gap(ratings, [0.0, 1.0, 0.5, 4.0])  # orders (2.5, 1) the wrong way
    assert rows == [(1.0, 1.5, 1.0, 1), (1.5, 2.0, 0.5, 2), (2.0, 3.0, 1.0, 1),
                    (3.0, 4.0, 1.0, 1), (4.0, 8.0, 1.0, 1)]


def test_accuracy_by_gap_leaves_out_pairs_less_than_one_rating_point_apart():
    """Catches changed default bins: pairs whose humans barely disagree (gap < 1) are not
    counted, and the bins are [1, 1.5), [1.5, 2), [2, 3), [3, 4), [4, 8)."""
    rows = accuracy_by_gap([0.0, 0.5, 2.0, 3.5, 3.9], [0.0, 1.0, 2.0, 3.0, 4.0])
    # gaps: 0.5, 0.4 (left out) | 1.5, 1.5, 1.9 | 2.0 | 3.0, 3.4, 3.5, 3.9 | none >= 4
    assert [(lo, hi, n) for lo, hi, _, n in rows] == [(1.5, 2.0, 3), (2.0, 3.0, 1), (3.0, 4.0, 4)]
    assert all(acc == 1.0 for _, _, acc, _ in rows)


def test_accuracy_by_gap_refuses_ratings_off_the_human_scale():
    """Catches accuracy_by_gap not validating its ratings (a 0..10 scale was binned as -4..4)."""
    with pytest.raises(ValueError, match=r"ratings\[1\] = 9.0 is outside the human rating scale"):
        accuracy_by_gap([0.0, 9.0], [0.0, 1.0])


# ---------------------------------------------------------------- ppo_edu.figures


@pytest.mark.parametrize("epsilon", [0.2, 0.3])
def test_plot_clip_terms_draws_the_papers_figure_1_for_its_epsilon(epsilon):
    """Catches swapped A > 0 / A < 0 panels, epsilon not passed to the curve or the title,
    the 1 +- eps marker on the wrong side, the L^CPI line without A, the red start dot off
    (1, A), and an r axis that does not run from 0 to 2."""
    fig = figures.plot_clip_terms(epsilon)
    left, right = fig.axes
    for ax, adv, sign, bound in ((left, 1.0, "A > 0", 1 + epsilon), (right, -1.0, "A < 0", 1 - epsilon)):
        clip_line, cpi_line, bound_line, start_dot, _ = ax.lines
        r = clip_line.get_xdata()
        assert r[0] == 0 and r[-1] == 2
        np.testing.assert_allclose(clip_line.get_ydata(),
                                   np.minimum(r * adv, np.clip(r, 1 - epsilon, 1 + epsilon) * adv))
        np.testing.assert_allclose(cpi_line.get_ydata(), r * adv)
        assert list(bound_line.get_xdata()) == [bound, bound]
        assert list(start_dot.get_xdata()) == [1] and list(start_dot.get_ydata()) == [adv]
        assert ax.get_title() == f"{sign}  (ε = {epsilon:g})"
        (note,) = ax.texts
        assert note.get_text() == ("1+ε" if adv > 0 else "1−ε")
        assert note.xy[0] == bound and note.xy[1] == pytest.approx(bound * adv)
    # by hand, for eps = 0.2: A > 0 is flat at 1.2 past r = 1.2, A < 0 flat at -0.8 below 0.8
    left_y, right_y = left.lines[0].get_ydata(), right.lines[0].get_ydata()
    r = left.lines[0].get_xdata()
    i = int(np.argmin(np.abs(r - 1.5)))
    j = int(np.argmin(np.abs(r - 0.5)))
    assert left_y[i] == pytest.approx(1 + epsilon) and right_y[j] == pytest.approx(-(1 - epsilon))
    assert left_y[j] == pytest.approx(0.5) and right_y[i] == pytest.approx(-1.5)


def test_save_l_clip_draws_with_the_epsilon_it_is_given(tmp_path, monkeypatch):
    """Catches save_l_clip not passing its epsilon on (the file showed eps = 0.2 whatever
    was asked)."""
    seen = []
    real = figures.plot_clip_terms

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        seen.append(fig.axes[0].get_title())
        return fig

    monkeypatch.setattr(figures, "plot_clip_terms", spy)
    path = figures.save_l_clip(tmp_path / "fig.png", epsilon=0.3)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert seen == ["A > 0  (ε = 0.3)"]


def test_plot_surrogate_epochs_draws_the_kl_budget_it_is_given():
    """Catches the KL-budget line drawn at 0.02 whatever budget the legend names."""
    history = [{"epoch": e, "kl": 0.01 * (e + 1), "clip_fraction": 0.0, "eval_return": 9.0} for e in range(3)]
    kl_ax = figures.plot_surrogate_epochs({"L^CPI": history}, kl_budget=0.05).axes[0]
    budget = kl_ax.lines[-1]
    assert list(budget.get_ydata()) == [0.05, 0.05]
    assert legend_labels(kl_ax)[-1] == "typical PPO step (0.05)"


def test_plot_seed_sweep_draws_each_seed_before_to_after_and_the_mean_of_that_objective():
    """Catches a seed's line drawn after -> before, its label put at the wrong end, the
    black line being the median instead of the mean, and a legend counting the seeds of
    every objective instead of this one's."""
    rows = [{"seed": s, "objective": name, "return_before": 100.0 + s, "return_after": after}
            for s, (a, b) in enumerate([(0.0, 500.0), (0.0, 200.0), (90.0, 20.0)])
            for name, after in (("cpi", a), ("clip", b))]
    fig = figures.plot_seed_sweep(rows)
    for ax, name, afters in zip(fig.axes, ["cpi", "clip"], [[0.0, 0.0, 90.0], [500.0, 200.0, 20.0]]):
        assert ax.get_title() == name
        *seed_lines, mean_line = ax.lines
        for s, line in enumerate(seed_lines):
            assert list(line.get_xdata()) == [0, 1]
            assert list(line.get_ydata()) == [100.0 + s, afters[s]]
        for s, note in enumerate(ax.texts):
            assert note.get_text() == f"seed {s}" and tuple(note.xy) == (1, afters[s])
        # the mean, not the median (cpi: median after is 0, mean 30)
        np.testing.assert_allclose(mean_line.get_ydata(), [101.0, np.mean(afters)])
        assert legend_labels(ax) == ["mean of 3 seeds"]


# ---------------------------------------------------------------- ppo_edu.animation


def greedy_replay(agent, seed, env_id="CartPole-v1", max_steps=None):
    """Every frame, the return and the length of the argmax policy's episode, played by hand."""
    env = gym.make(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames, total, steps = [env.render()], 0.0, 0
        while max_steps is None or steps < max_steps:
            with torch.no_grad():
                probs = agent.distribution(torch.as_tensor(obs, dtype=torch.float32)).probs
            obs, reward, terminated, truncated, _ = env.step(int(probs.argmax()))
            total, steps = total + float(reward), steps + 1
            frames.append(env.render())
            if terminated or truncated:
                break
    finally:
        env.close()
    return frames, total, steps


def test_record_episode_is_the_greedy_episode_with_every_kth_frame_and_the_last():
    """Catches the least likely action taken, or sampling, where ``deterministic=True``
    asks for the most likely one; a start state not fixed by the seed; and the last frame
    (the pole falling) dropped when the episode ends between two kept frames."""
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    for seed in (0, 1):
        frames, total, steps = greedy_replay(agent, seed)
        episode = animation.record_episode(agent, seed=seed, frame_every=1)
        assert (episode.episode_return, episode.length) == (total, steps)
        assert len(episode.frames) == len(frames)
        assert all(np.array_equal(a, b) for a, b in zip(episode.frames, frames))
        every = animation.record_episode(agent, seed=seed, frame_every=4)
        kept = list(range(0, steps + 1, 4)) + ([steps] if steps % 4 else [])
        assert len(every.frames) == len(kept)
        assert all(np.array_equal(a, frames[k]) for a, k in zip(every.frames, kept))


def test_record_episode_samples_with_its_own_seed_like_evaluate():
    """Catches the action generator not being seeded with ``seed`` (every seed sampled the
    same action stream): a sampled episode is the one ``evaluate`` plays with that seed."""
    from ppo_edu.evaluate import evaluate

    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    for seed in (1, 2, 3, 4):
        episode = animation.record_episode(agent, seed=seed, deterministic=False, frame_every=1000)
        assert episode.episode_return == evaluate(agent, 1, seed=seed, deterministic=False).mean


def test_record_episode_stops_at_a_truncation():
    """Catches an episode end that checks only ``terminated``: Acrobot's 500-step time
    limit (a truncation) must end the recording."""
    torch.manual_seed(0)
    agent = ActorCritic(6, 3)
    episode = animation.record_episode(agent, seed=0, env_id="Acrobot-v1", max_steps=520, frame_every=1000)
    assert episode.length == 500 and episode.episode_return == -500.0
    assert len(episode.frames) == 2  # the start and the truncated end


@pytest.mark.parametrize("bad, match", [({"frame_every": 0}, "frame_every must be an integer >= 1"),
                                        ({"max_steps": 0}, "max_steps must be an integer >= 1")])
def test_record_episode_refuses_zero_frame_every_and_zero_max_steps(bad, match):
    """Catches the range checks letting 0 through (frame_every=0 divided by zero mid-episode,
    max_steps=0 returned an empty episode)."""
    with pytest.raises(ValueError, match=match):
        animation.record_episode(ActorCritic(4, 2), **bad)


def test_animate_plays_at_the_requested_frames_per_second():
    """Catches a wrong frame interval (the player ran at the wrong speed)."""
    frames = [np.zeros((8, 8, 3), dtype=np.uint8)] * 2
    assert animation.animate(frames, fps=10)._interval == pytest.approx(100.0)
    assert animation.animate(frames, fps=25)._interval == pytest.approx(40.0)


def test_episode_html_passes_every_setting_on(monkeypatch):
    """Catches episode_html not passing seed, frame_every, deterministic or fps on to the
    recorder and the player."""
    calls = {}

    def fake_record(agent, **kw):
        calls["record"] = kw
        return animation.Episode([np.zeros((8, 8, 3), dtype=np.uint8)] * 3, 7.0, 5)

    real_animate = animation.animate

    def spy_animate(frames, **kw):
        calls["animate"] = kw
        return real_animate(frames, **kw)

    monkeypatch.setattr(animation, "record_episode", fake_record)
    monkeypatch.setattr(animation, "animate", spy_animate)
    animation.episode_html(ActorCritic(4, 2), seed=7, max_steps=9, frame_every=3, fps=10,
                           deterministic=False)
    assert calls["record"] == {"seed": 7, "env_id": "CartPole-v1", "deterministic": False,
                               "max_steps": 9, "frame_every": 3}
    assert calls["animate"] == {"fps": 10, "title": "CartPole-v1: return 7 in 5 steps"}


# ---------------------------------------------------------------- ppo_edu.cartpole


def test_cli_figure_and_summary_show_the_numbers_they_name(tmp_path, capsys, monkeypatch):
    """Catches, in ``python -m ppo_edu.cartpole``: the evaluations drawn on another panel
    than the return's; a title with the wrong seed, the std for the final mean, or the last
    evaluation for the best; an unsmoothed return curve; and a training time printed from
    the first update instead of the last."""
    import ppo_edu.evaluate as module
    from ppo_edu.evaluate import EvalResult

    scripted = iter([(5.0, 1.0), (9.0, 1.0), (3.0, 1.0), (2.0, 1.0), (4.0, 7.0)])  # 4 during, final

    def fake_evaluate(agent, episodes, **kw):
        time.sleep(0.15)  # so that the updates' wall times differ in the first decimal
        mean, std = next(scripted)
        return EvalResult(mean, std, [mean] * episodes)

    figs = []
    monkeypatch.setattr(module, "evaluate", fake_evaluate)
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    out = tmp_path / "run"
    assert main_cli(["--seed", "3", "--steps", "1024", "--output", str(out), "--eval-episodes", "2",
                     "--eval-every", "256", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "history.json").read_text())
    history = record["history"]
    assert f"trained 1,024 env steps in {history[-1]['wall_time']:.1f} s" in printed
    assert f"{history[0]['wall_time']:.1f}" != f"{history[-1]['wall_time']:.1f}"
    (fig,) = figs
    assert fig.get_suptitle() == "PPO on CartPole-v1 (seed 3): final evaluation 4, best during training 9"
    return_ax, *others = fig.axes
    curve, dots = return_ax.lines
    np.testing.assert_array_equal(dots.get_xdata(), [256, 512, 768, 1024])
    np.testing.assert_array_equal(dots.get_ydata(), [5.0, 9.0, 3.0, 2.0])
    assert all(len(ax.lines) <= 1 for ax in others)
    returns = column([{k: (NAN if v is None else v) for k, v in row.items()} for row in history],
                     "episode_return")
    np.testing.assert_allclose(curve.get_ydata(), smoothed(returns, 5))
    assert not np.allclose(smoothed(returns, 5), returns, equal_nan=True)  # the smoothing shows


def test_cli_evaluates_after_every_update_with_eval_every_one(tmp_path, capsys, monkeypatch):
    """Catches an evaluation switch that reads --eval-every 1 as off (only 0 turns it off)."""
    import ppo_edu.evaluate as module
    from ppo_edu.evaluate import EvalResult

    monkeypatch.setattr(module, "evaluate", lambda agent, episodes, **kw: EvalResult(1.0, 0.0, [1.0] * episodes))
    out = tmp_path / "run"
    assert main_cli(["--steps", "512", "--output", str(out), "--eval-episodes", "1", "--eval-every", "1",
                     "--no-progress"]) == 0
    record = json.loads((out / "history.json").read_text())
    assert [row["env_steps"] for row in record["evaluations"]] == [256, 512]
    assert (out / "best_agent.safetensors").exists()


def main_cli(argv):
    from ppo_edu.cartpole import main

    return main(argv)


# ---------------------------------------------------------------- ppo_edu.rollout


def test_make_cartpole_envs_seeds_the_start_states_and_the_action_space():
    """Catches make_cartpole_envs ignoring its seed: a collector made without a seed of its
    own must start both copies from the same states, and action_space.sample() must repeat."""
    def start(seed):
        envs = make_cartpole_envs(2, seed=seed)
        try:
            collector = RolloutCollector(envs, ActorCritic(4, 2))  # no seed: the env's own
            return collector.obs.copy(), [envs.action_space.sample().tolist() for _ in range(8)]
        finally:
            envs.close()

    (obs_a, acts_a), (obs_b, acts_b), (obs_c, _) = start(7), start(7), start(8)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a, obs_c)
    assert acts_a == acts_b


def test_rollout_collector_refuses_an_agent_that_does_not_fit_the_env():
    """Catches a missing size check: a 3-action agent on 2-action CartPole failed inside
    gymnasium ("invalid action"), a 5-feature one inside numpy."""
    envs = make_cartpole_envs(2, seed=0)
    try:
        with pytest.raises(ValueError, match="chooses among 3 actions but the env has 2"):
            RolloutCollector(envs, ActorCritic(4, 3))
        with pytest.raises(ValueError, match="takes 5 observation features but the env gives 4"):
            RolloutCollector(envs, ActorCritic(5, 2))
    finally:
        envs.close()


def test_rollout_collector_refuses_every_autoreset_mode_but_same_step():
    """Catches a mode check that refuses only NEXT_STEP: with DISABLED an ended env is never
    reset and the collector steps on past the end of its episode."""
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})
    try:
        with pytest.raises(ValueError, match="needs AutoresetMode.SAME_STEP"):
            RolloutCollector(envs, ActorCritic(4, 2))
    finally:
        envs.close()


def short_limit_envs(env_id="CartPole-v1", num_envs=3, max_episode_steps=12, seed=0):
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        max_episode_steps=max_episode_steps,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.reset(seed=seed)
    return envs


def test_episode_lengths_and_returns_are_counted_across_consecutive_rollouts():
    """Catches the running return and length not reset when an episode ends (the next
    episode inherited them), reset at the start of every collect (an episode spanning two
    rollouts was cut short), or the ending step not counted. Lengths are recounted by hand
    from the done flags; on CartPole each step pays 1, so a return is its length."""
    torch.manual_seed(0)
    envs = short_limit_envs()
    collector = RolloutCollector(envs, ActorCritic(4, 2), seed=0)
    since_end = np.zeros(3, dtype=int)
    lengths = []
    for _ in range(8):
        rollout = collector.collect(5)  # shorter than the 12-step limit: episodes span rollouts
        done = (rollout.terminated | rollout.truncated).numpy()
        ended_here = []
        for t in range(rollout.num_steps):
            since_end += 1
            ended_here += [int(since_end[i]) for i in np.flatnonzero(done[t])]
            since_end[done[t]] = 0
        assert rollout.episode_lengths == ended_here
        assert rollout.episode_returns == [float(n) for n in ended_here]
        lengths += ended_here
    envs.close()
    assert 12 in lengths and len(lengths) >= 6  # some truncated at the limit, several ends


def test_episode_returns_add_up_the_rewards_not_the_steps():
    """Catches a return that counts steps instead of adding rewards (the same on CartPole,
    but Acrobot pays -1 a step)."""
    torch.manual_seed(0)
    envs = short_limit_envs("Acrobot-v1", num_envs=2, max_episode_steps=6)
    rollout = RolloutCollector(envs, ActorCritic(6, 3), seed=0).collect(13)
    envs.close()
    assert rollout.episode_lengths == [6, 6, 6, 6]
    assert rollout.episode_returns == [-6.0] * 4


def test_plot_history_refuses_a_smoothing_window_below_one():
    """plot_history drew the raw data for ``smooth=0`` or a negative window, where plot_runs
    refused it: a typo in ``smooth`` must not pass silently."""
    history = [{"env_steps": 100, "episode_return": 1.0}, {"env_steps": 200, "episode_return": 2.0}]
    for bad in (0, -4):
        with pytest.raises(ValueError, match="window must be an integer >= 1"):
            plot_history(history, keys=["episode_return"], smooth=bad)
    fig = plot_history(history, keys=["episode_return"], smooth=1)  # 1 = no smoothing
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1.0, 2.0])


def test_plot_surrogate_epochs_without_evaluations_says_so_and_does_not_warn():
    """With no run evaluated, the return panel was left empty and its legend() warned
    "No artists with labels found"; the panel now says that nothing was evaluated."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # not a library's own deprecations: matplotlib 3.9.0 and 3.10.0 call pyparsing's parseString,
        # which pyparsing 3.3 deprecates (make test-floors runs matplotlib 3.9.0)
        warnings.simplefilter("ignore", DeprecationWarning)
        fig = figures.plot_surrogate_epochs({"a": [{"epoch": 0, "kl": 0.0, "clip_fraction": 0.0}]})
    assert fig.axes[1].get_legend() is None
    assert [t.get_text() for t in fig.axes[1].texts] == ["no run recorded eval_return"]
    assert fig.axes[0].get_legend() is not None
