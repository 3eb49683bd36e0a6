"""The plot helpers, the episode player, the memory table and the vanilla-PG warm-up.

The notebooks call these; here each plot is checked for the data it draws (the lines' x and
y data, against values worked out by hand), not only for running.
"""

import base64
import io
import math
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ppo_edu import animation, experiments
from ppo_edu.agents import ActorCritic
from ppo_edu.figures import plot_objective_along_line, plot_surrogate_epochs
from ppo_edu.lm.plots import (
    plot_accuracy_by_gap,
    plot_rm_history,
    plot_scores_vs_ratings,
    plot_sft_history,
)
from ppo_edu.plots import DASHBOARD, column, plot_evaluations, plot_history, plot_runs, smoothed
from ppo_edu.rlhf.memory import estimate_ppo_memory, format_table

NAN = float("nan")


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def ppo_history(n: int = 6) -> list[dict]:
    """A train_ppo-like history: metric j of update i is 10 j + i, so a swapped column shows;
    the first update finished no episode (NaN return), the third recorded no entropy."""
    history = []
    for i in range(n):
        record = {"update": i + 1, "env_steps": 512 * (i + 1)}
        for j, (key, _) in enumerate(DASHBOARD):
            record[key] = float(10 * j + i)
        history.append(record)
    history[0]["episode_return"] = NAN
    del history[2]["entropy"]
    return history


# ---------------------------------------------------------------- ppo_edu.plots: smoothed, column


@pytest.mark.parametrize("window", [1, 3, 10, 50])
def test_smoothed_of_a_constant_is_that_constant(window):
    assert np.array_equal(smoothed([2.5] * 12, window), np.full(12, 2.5))


def test_smoothed_is_the_trailing_window_mean_of_a_step():
    step = [0.0] * 5 + [1.0] * 5
    assert np.allclose(smoothed(step, 4), [0, 0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1])
    # before a full window, the mean of what there is so far
    assert np.allclose(smoothed([3.0, 6.0, 9.0, 12.0], 3), [3.0, 4.5, 6.0, 9.0])
    assert np.array_equal(smoothed([1.0, 5.0, 2.0], 1), [1.0, 5.0, 2.0])


def test_smoothed_skips_nans_and_stays_nan_only_where_the_whole_window_is_nan():
    out = smoothed([NAN, 2.0, NAN, 4.0, NAN, NAN, NAN], 2)
    np.testing.assert_array_equal(out, [NAN, 2.0, 2.0, 4.0, 4.0, NAN, NAN])


def test_column_is_one_metric_as_floats_with_nan_where_a_record_lacks_it():
    history = [{"a": 1, "b": 2.5}, {"b": 3.0}, {"a": 4, "b": -1.0}]
    a = column(history, "a")
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, [1.0, NAN, 4.0])
    np.testing.assert_array_equal(column(history, "b"), [2.5, 3.0, -1.0])
    assert np.isnan(column(history, "missing")).all()  # no error: an all-NaN column
    assert column([], "a").shape == (0,)


# ---------------------------------------------------------------- ppo_edu.plots: plot_history


def test_plot_history_unsmoothed_draws_each_dashboard_column_against_env_steps():
    history = ppo_history()
    fig = plot_history(history, smooth=1)
    axes = fig.axes
    assert len(axes) == len(DASHBOARD) == 6  # 2 x 3 grid, every panel used
    steps = [512 * (i + 1) for i in range(6)]
    for ax, (key, title) in zip(axes, DASHBOARD):
        assert ax.get_visible() and len(ax.lines) == 1
        assert ax.get_title() == title
        assert ax.get_xlabel() == "env steps"
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), steps)
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), [r.get(key, NAN) for r in history])
        assert ax.get_legend() is None  # no label, no legend


def test_plot_history_smooths_each_panel_with_a_trailing_mean():
    history = [{"env_steps": s, "episode_return": r}
               for s, r in zip([10, 20, 30, 40, 50], [NAN, 3.0, 6.0, 9.0, 12.0])]
    fig = plot_history(history, keys=["episode_return"], smooth=2, ncols=1)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [NAN, 3.0, 4.5, 7.5, 10.5])


def test_plot_history_takes_plain_keys_another_x_and_hides_unused_panels():
    history = ppo_history(4)
    fig = plot_history(history, keys=["approx_kl", "entropy"], x="update", smooth=1, ncols=3)
    assert len(fig.axes) == 3
    kl, entropy, spare = fig.axes
    assert not spare.get_visible() and not spare.lines
    assert kl.get_title() == "approx_kl" and entropy.get_title() == "entropy"
    assert kl.get_xlabel() == "update"
    np.testing.assert_array_equal(kl.lines[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(kl.lines[0].get_ydata(), [10.0, 11.0, 12.0, 13.0])
    np.testing.assert_array_equal(entropy.lines[0].get_ydata(), [30.0, 31.0, NAN, 33.0])


def test_plot_history_draws_a_second_run_onto_the_given_axes_with_a_legend():
    first = [{"env_steps": i, "entropy": 1.0 - 0.1 * i, "value_loss": 5.0 - i} for i in range(5)]
    second = [{"env_steps": i, "entropy": 0.5, "value_loss": 2.0} for i in range(5)]
    keys = [("entropy", "S"), ("value_loss", "V")]
    fig = plot_history(first, keys=keys, smooth=1, label="lr 3e-4", ncols=2)
    again = plot_history(second, keys=keys, smooth=1, label="lr 1e-3", axes=fig.axes)
    assert again is fig and len(fig.axes) == 2
    for ax, key in zip(fig.axes, ["entropy", "value_loss"]):
        assert len(ax.lines) == 2
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [r[key] for r in first])
        np.testing.assert_allclose(ax.lines[1].get_ydata(), [r[key] for r in second])
    assert legend_labels(fig.axes[0]) == ["lr 3e-4", "lr 1e-3"]


# ---------------------------------------------------------------- ppo_edu.plots: plot_runs


def test_plot_evaluations_draws_dots_at_their_env_steps_with_a_legend():
    fig, ax = plt.subplots()
    plot_evaluations(ax, [(2048, 173.0), (4096, 500.0)])
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [2048, 4096] and list(line.get_ydata()) == [173.0, 500.0]
    assert line.get_linestyle() == "None" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="no evaluations to draw"):
        plot_evaluations(ax, [])
    plt.close(fig)


def test_plot_runs_draws_the_median_over_seeds_and_a_min_max_band():
    def run(values):
        return [{"env_steps": 100 * (i + 1), "approx_kl": v} for i, v in enumerate(values)]

    runs = {
        "PPO": [run([1.0, 2.0, 6.0, 4.0]), run([3.0, 0.0, 5.0]), run([8.0, 10.0, 1.0, 9.0])],  # cut to 3
        "no clipping": [run([7.0, 8.0, 9.0])],
    }
    _, given = plt.subplots()
    given.plot([100, 300], [0.0, 0.0])  # something drawn first: the runs' lines start at colour C1
    ax = plot_runs(runs, "approx_kl", smooth=1, ax=given)
    assert ax is given
    _, ppo, no_clip = ax.lines
    np.testing.assert_array_equal(ppo.get_xdata(), [100, 200, 300])
    np.testing.assert_array_equal(ppo.get_ydata(), [3.0, 2.0, 5.0])  # the median (the means are 4, 4, 4)
    np.testing.assert_array_equal(no_clip.get_ydata(), [7.0, 8.0, 9.0])
    assert legend_labels(ax) == ["PPO (n=3)", "no clipping (n=1)"]
    assert ax.get_xlabel() == "env steps" and ax.get_ylabel() == "approx kl"
    assert ax.get_title() == "approx kl"
    band = ax.collections[0].get_paths()[0].vertices
    for x, low, high in zip([100, 200, 300], [1.0, 0.0, 1.0], [8.0, 10.0, 6.0]):
        ys = band[band[:, 0] == x, 1]
        assert ys.min() == low and ys.max() == high
    for collection, line in zip(ax.collections, (ppo, no_clip)):  # each band in its line's colour
        assert matplotlib.colors.same_color(collection.get_facecolor()[0][:3], line.get_color())


def test_plot_runs_refuses_empty_groups_and_runs_recorded_at_other_points():
    def run(step, n=3):
        return [{"env_steps": step * (i + 1), "episode_return": 1.0} for i in range(n)]

    with pytest.raises(ValueError, match="group 'PPO' has no runs"):
        plot_runs({"PPO": []})  # was "min() arg is an empty sequence"
    with pytest.raises(ValueError, match="group 'PPO': run 1 records env_steps at other points than run 0"):
        plot_runs({"PPO": [run(512), run(1024)]})  # was drawn on run 0's x without a word


def test_plot_runs_smooths_each_seed_and_keeps_all_nan_updates_nan_without_warnings():
    runs = {"A": [[{"env_steps": i, "episode_return": r} for i, r in enumerate(rs)]
                  for rs in ([NAN, NAN, 4.0, 8.0], [NAN, NAN, 2.0, 6.0])]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "All-NaN slice encountered" must not leak
        ax = plot_runs(runs, smooth=2, title="training return")
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [NAN, NAN, 3.0, 5.0])  # median of 4, 2 then 6, 4
    assert ax.get_title() == "training return" and ax.get_ylabel() == "episode return"


# ---------------------------------------------------------------- ppo_edu.lm.plots


def test_plot_sft_history_draws_the_loss_its_trailing_mean_and_held_out_perplexity():
    losses = [5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    history = [{"step": i + 1, "loss": v, "lr": 1e-3} for i, v in enumerate(losses)]
    history[3]["eval_ppl"], history[7]["eval_ppl"] = 40.0, 12.0
    ax = plot_sft_history(history, window=4)
    raw, mean = ax.lines
    np.testing.assert_array_equal(raw.get_xdata(), range(1, 9))
    np.testing.assert_array_equal(raw.get_ydata(), losses)
    np.testing.assert_array_equal(mean.get_xdata(), [4, 5, 6, 7, 8])  # first full window ends at step 4
    np.testing.assert_allclose(mean.get_ydata(), [3.5, 2.5, 1.75, 1.25, 1.0])
    assert legend_labels(ax) == ["train loss (per step)", "train loss (4-step mean)", "held-out perplexity"]
    assert ax.get_xlabel() == "SFT step"
    twin = [other for other in ax.figure.axes if other is not ax]
    assert len(twin) == 1 and twin[0].get_ylabel() == "held-out perplexity"
    (ppl,) = twin[0].lines
    assert list(ppl.get_xdata()) == [4, 8] and list(ppl.get_ydata()) == [40.0, 12.0]


def test_plot_sft_history_without_evaluations_has_no_perplexity_axis():
    history = [{"step": i + 1, "loss": 2.0 - 0.1 * i} for i in range(3)]
    ax = plot_sft_history(history, window=5)  # fewer steps than the window: the mean is the raw loss
    assert ax.figure.axes == [ax]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [2.0, 1.9, 1.8])
    assert legend_labels(ax) == ["train loss (per step)", "train loss (5-step mean)"]


def test_plot_rm_history_draws_loss_and_accuracy_of_the_steps_that_had_pairs():
    history = [
        {"step": 1, "pairs": 3, "loss": 0.9, "batch_accuracy": 0.40},
        {"step": 2, "pairs": 0},  # no pair in this batch: no loss, no accuracy
        {"step": 3, "pairs": 2, "loss": 0.7, "batch_accuracy": 0.50, "eval_accuracy": 0.55},
        {"step": 4, "pairs": 4, "loss": 0.5, "batch_accuracy": 0.70},
        {"step": 5, "pairs": 0, "eval_accuracy": 0.65},
    ]
    fig = plot_rm_history(history, baseline=0.6, window=2)
    loss_ax, acc_ax = fig.axes
    raw, mean, chance = loss_ax.lines
    np.testing.assert_array_equal(raw.get_xdata(), [1, 3, 4])
    np.testing.assert_allclose(raw.get_ydata(), [0.9, 0.7, 0.5])
    np.testing.assert_array_equal(mean.get_xdata(), [3, 4])
    np.testing.assert_allclose(mean.get_ydata(), [0.8, 0.6])
    assert chance.get_ydata()[0] == pytest.approx(math.log(2))
    assert loss_ax.get_ylabel() == "Bradley-Terry loss" and acc_ax.get_ylabel() == "pairwise accuracy"
    raw, mean, chance, held_out, vader = acc_ax.lines
    np.testing.assert_allclose(raw.get_ydata(), [0.4, 0.5, 0.7])
    np.testing.assert_allclose(mean.get_ydata(), [0.45, 0.6])
    assert chance.get_ydata()[0] == 0.5 and vader.get_ydata()[0] == 0.6
    assert list(held_out.get_xdata()) == [3, 5] and list(held_out.get_ydata()) == [0.55, 0.65]
    assert legend_labels(loss_ax) == ["train (in-batch pairs)", "log 2 (chance)"]
    assert legend_labels(acc_ax) == ["train (in-batch pairs)", "chance", "held-out pairs", "VADER (held-out)"]


def test_plot_rm_history_without_baseline_or_evaluations_draws_no_such_lines():
    history = [{"step": i + 1, "loss": 0.7, "batch_accuracy": 0.5} for i in range(6)]
    _, acc_ax = plot_rm_history(history).axes
    assert len(acc_ax.lines) == 3  # raw, smoothed, chance
    assert legend_labels(acc_ax) == ["train (in-batch pairs)", "chance"]


def test_plot_scores_vs_ratings_scatters_each_scorer_with_its_pearson_r():
    ratings = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0])
    noisy = ratings + np.array([1.0, -1.0, 0.5, -0.5, 1.0, -1.0])
    scorers = {"reward model": 2 * ratings + 1, "VADER": -ratings, "noisy": noisy}
    fig = plot_scores_vs_ratings(ratings, scorers, title="test snippets")
    assert len(fig.axes) == 3
    for ax, (name, scores) in zip(fig.axes, scorers.items()):
        np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([ratings, scores]))
        assert ax.get_ylabel() == f"{name} score"
    titles = [ax.get_title() for ax in fig.axes]
    r = np.corrcoef(noisy, ratings)[0, 1]
    assert 0.5 < r < 0.99
    assert titles == ["reward model: Pearson r = 1.00", "VADER: Pearson r = -1.00", f"noisy: Pearson r = {r:.2f}"]
    assert fig.get_suptitle() == "test snippets"


def test_plot_scores_vs_ratings_refuses_ratings_off_the_human_scale():
    with pytest.raises(ValueError, match=r"ratings\[1\] = 5.0 is outside the human rating scale"):
        plot_scores_vs_ratings([0.0, 5.0], {"a": [0.0, 1.0]})


def test_plot_scores_vs_ratings_names_scores_it_cannot_correlate():
    ratings = [-1.0, 0.0, 2.0]
    fig = plot_scores_vs_ratings(ratings, {"constant": [0.5, 0.5, 0.5]})
    assert fig.axes[0].get_title() == "constant: constant scores, r undefined"  # was "Pearson r = nan"
    with pytest.raises(ValueError, match="VADER: scores hold NaN or inf"):
        plot_scores_vs_ratings(ratings, {"VADER": [0.1, float("nan"), 0.3]})
    with pytest.raises(ValueError, match=r"rm: scores must have one entry per rating, shape \(3,\); got \(2,\)"):
        plot_scores_vs_ratings(ratings, {"rm": [0.1, 0.2]})


def test_plot_accuracy_by_gap_plots_each_scorers_accuracy_at_the_bin_centres():
    ratings = [0.0, 1.0, 2.5, 4.0]  # gaps: 1 | 1.5, 1.5 | 2.5 | 3 | 4
    scorers = {
        "perfect": [0.0, 1.0, 2.5, 4.0],
        "one slip": [0.0, 1.0, 0.5, 4.0],  # orders (2.5, 1) wrong: half the 1.5-gap pairs
        "constant": [1.0, 1.0, 1.0, 1.0],  # every pair a tie: half right
    }
    ax = plot_accuracy_by_gap(ratings, scorers)
    centres = [1.25, 1.75, 2.5, 3.5, 5.0]  # the open last bin [4, 8) is drawn at (4 + 6) / 2
    expected = {"perfect": [1, 1, 1, 1, 1], "one slip": [1, 0.5, 1, 1, 1], "constant": [0.5] * 5}
    for line, name in zip(ax.lines, scorers):
        np.testing.assert_allclose(line.get_xdata(), centres)
        np.testing.assert_allclose(line.get_ydata(), expected[name])
    assert ax.lines[3].get_ydata()[0] == 0.5  # the chance line
    assert legend_labels(ax) == ["perfect", "one slip", "constant", "chance"]
    assert ax.get_ylabel() == "pairwise accuracy"


def test_accuracy_by_gap_counts_every_pair_once_whatever_the_block_of_rows(monkeypatch):
    import ppo_edu.lm.plots as plots

    rng = np.random.default_rng(3)
    ratings = np.round(rng.uniform(-4, 4, size=50), 1)
    scores = np.round(rng.normal(size=50), 0)  # rounded: many ties, each half right
    edges = (-8.0, 0.0, 1.0, 2.5, 8.0)
    expected = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        pairs = [(i, j) for i in range(50) for j in range(50) if lo <= ratings[i] - ratings[j] < hi]
        right = sum(1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0 for i, j in pairs)
        expected.append((lo, hi, right / len(pairs), len(pairs)))
    for rows in (1, 7, 50, 1024):  # one text at a time, blocks that do not divide 50, all at once
        monkeypatch.setattr(plots, "_ROWS", rows)
        got = plots.accuracy_by_gap(ratings, scores, edges)
        assert [(lo, hi, n) for lo, hi, _, n in got] == [(lo, hi, n) for lo, hi, _, n in expected]
        np.testing.assert_allclose([a for _, _, a, _ in got], [a for _, _, a, _ in expected], rtol=0, atol=1e-15)
    assert sum(n for *_, n in expected) == 50 * 50  # the edges cover every gap, the diagonal included


# ---------------------------------------------------------------- ppo_edu.figures


def test_plot_surrogate_epochs_draws_kl_evaluated_return_and_clip_fraction_per_objective():
    cpi = [{"epoch": e, "kl": kl, "clip_fraction": cf}
           for e, kl, cf in zip(range(4), [0.0, 0.01, 0.05, 0.2], [0.0, 0.1, 0.3, 0.6])]
    cpi[0]["eval_return"], cpi[3]["eval_return"] = 150.0, 60.0
    clip = [{"epoch": e, "kl": kl, "clip_fraction": cf, "eval_return": 150.0 + e}
            for e, kl, cf in zip(range(4), [0.0, 0.004, 0.008, 0.01], [0.0, 0.05, 0.1, 0.12])]
    fig = plot_surrogate_epochs({"L^CPI": cpi, "L^CLIP": clip})
    kl_ax, return_ax, clip_ax = fig.axes
    assert kl_ax.get_yscale() == "log"
    # KL 0 is drawn at 1e-6 so that the log axis can show it
    np.testing.assert_allclose(kl_ax.lines[0].get_ydata(), [1e-6, 0.01, 0.05, 0.2])
    np.testing.assert_allclose(kl_ax.lines[1].get_ydata(), [1e-6, 0.004, 0.008, 0.01])
    np.testing.assert_array_equal(kl_ax.lines[0].get_xdata(), [0, 1, 2, 3])
    assert list(return_ax.lines[0].get_xdata()) == [0, 3] and list(return_ax.lines[0].get_ydata()) == [150.0, 60.0]
    assert list(return_ax.lines[1].get_ydata()) == [150.0, 151.0, 152.0, 153.0]
    np.testing.assert_allclose(clip_ax.lines[0].get_ydata(), [0.0, 0.1, 0.3, 0.6])
    np.testing.assert_allclose(clip_ax.lines[1].get_ydata(), [0.0, 0.05, 0.1, 0.12])
    assert kl_ax.lines[2].get_ydata()[0] == 0.02  # the KL budget line
    assert legend_labels(kl_ax) == ["L^CPI", "L^CLIP", "typical PPO step (0.02)"]
    for ax in (return_ax, clip_ax):
        assert legend_labels(ax) == ["L^CPI", "L^CLIP"]
        assert ax.get_xlabel() == "epochs on the same batch"
    # one colour per objective across the three panels
    for i in range(2):
        assert len({line.get_color() for line in (kl_ax.lines[i], return_ax.lines[i], clip_ax.lines[i])}) == 1


def test_plot_surrogate_epochs_keeps_each_runs_colour_when_one_has_no_evaluations():
    plain = [{"epoch": e, "kl": 0.01 * e, "clip_fraction": 0.0} for e in range(3)]  # never evaluated
    evaluated = [{**row, "eval_return": 100.0} for row in plain]
    kl_ax, return_ax, clip_ax = plot_surrogate_epochs({"a": plain, "b": evaluated}, kl_budget=None).axes
    (b_return,) = return_ax.lines  # "a" draws nothing there
    assert matplotlib.colors.same_color(b_return.get_color(), kl_ax.lines[1].get_color())
    assert matplotlib.colors.same_color(b_return.get_color(), clip_ax.lines[1].get_color())
    assert not matplotlib.colors.same_color(kl_ax.lines[0].get_color(), kl_ax.lines[1].get_color())
    assert "0 drawn at 1e-6" in kl_ax.get_title()


def test_plot_surrogate_epochs_without_a_kl_budget_draws_no_budget_line():
    history = [{"epoch": e, "kl": 0.01 * e, "clip_fraction": 0.0, "eval_return": 100.0} for e in range(3)]
    kl_ax = plot_surrogate_epochs({"L^CPI": history}, kl_budget=None).axes[0]
    assert len(kl_ax.lines) == 1 and legend_labels(kl_ax) == ["L^CPI"]


def test_plot_objective_along_line_draws_both_surrogates_and_kl_against_alpha():
    line = {"alpha": [0.0, 0.5, 1.0, 1.5], "cpi": [0.0, 0.1, 0.2, 0.3],
            "clip": [0.0, 0.09, 0.12, 0.05], "kl": [0.0, 0.002, 0.008, 0.02]}
    fig = plot_objective_along_line(line, epsilon=0.3)
    (ax,) = fig.axes
    for drawn, key in zip(ax.lines, ["cpi", "clip", "kl"]):
        np.testing.assert_array_equal(drawn.get_xdata(), line["alpha"])
        np.testing.assert_array_equal(drawn.get_ydata(), line[key])
    assert list(ax.lines[3].get_xdata()) == [1.0, 1.0]  # alpha = 1: theta_new itself
    labels = legend_labels(ax)
    assert len(labels) == 3 and "CPI" in labels[0] and "CLIP" in labels[1] and "KL" in labels[2]
    assert "ε = 0.3" in labels[1]


def test_plot_objective_along_line_draws_the_clipped_term_as_the_papers_fourth_curve():
    line = {"alpha": [0.0, 0.5, 1.0, 1.5], "cpi": [0.0, 0.1, 0.2, 0.3], "clip_term": [0.0, 0.1, 0.15, 0.15],
            "clip": [0.0, 0.09, 0.12, 0.05], "kl": [0.0, 0.002, 0.008, 0.02]}
    (ax,) = plot_objective_along_line(line, epsilon=0.2).axes
    np.testing.assert_array_equal(ax.lines[3].get_ydata(), line["clip_term"])
    assert ax.lines[3].get_linestyle() == "--"
    # a colour of its own, not L^CLIP's
    assert not matplotlib.colors.same_color(ax.lines[3].get_color(), ax.lines[1].get_color())
    assert "clip" in legend_labels(ax)[3] and len(legend_labels(ax)) == 4


# ---------------------------------------------------------------- ppo_edu.experiments.train_vanilla_pg


def vanilla_pg(seed: int, global_seed: int = 0, **kw):
    """The same starting agent each time; ``global_seed`` then scrambles the global torch RNG,
    which ``seed`` alone must override."""
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    torch.manual_seed(global_seed)
    kw = {"iterations": 3, "num_envs": 2, "num_steps": 40, **kw}
    return agent, experiments.train_vanilla_pg(agent, seed=seed, progress=False, **kw)


@pytest.fixture
def rollouts(monkeypatch):
    """Every rollout train_vanilla_pg collects, in order."""
    collected = []

    class Recording(experiments.RolloutCollector):
        def collect(self, num_steps):
            collected.append(super().collect(num_steps))
            return collected[-1]

    monkeypatch.setattr(experiments, "RolloutCollector", Recording)
    return collected


def test_train_vanilla_pg_records_the_mean_return_of_the_episodes_each_batch_finished(rollouts):
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    before = [p.detach().clone() for p in agent.parameters()]
    history = experiments.train_vanilla_pg(agent, iterations=3, num_envs=2, num_steps=40, seed=0, progress=False)
    assert len(history) == 3 and len(rollouts) == 3
    assert [tuple(rollout.obs.shape[:2]) for rollout in rollouts] == [(40, 2)] * 3
    assert [set(row) for row in history] == [{"iteration", "episode_return"}] * 3
    assert [row["iteration"] for row in history] == [0, 1, 2]
    finished = [rollout.episode_returns for rollout in rollouts]
    assert all(finished)  # 40 steps of a random CartPole policy always end some episode
    for row, returns in zip(history, finished):
        assert row["episode_return"] == pytest.approx(sum(returns) / len(returns))
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.parameters()))  # it trained


def test_train_vanilla_pg_records_nan_for_a_batch_where_no_episode_ended():
    _, history = vanilla_pg(seed=0, iterations=2, num_steps=4)  # no CartPole episode ends in 4 steps
    assert len(history) == 2 and all(math.isnan(row["episode_return"]) for row in history)


def test_train_vanilla_pg_is_reproducible_from_its_seed(rollouts):
    agent_a, a = vanilla_pg(seed=3, global_seed=1)
    agent_b, b = vanilla_pg(seed=3, global_seed=2)
    _, c = vanilla_pg(seed=4, global_seed=1)
    assert a == b
    assert all(torch.equal(x, y) for x, y in zip(agent_a.parameters(), agent_b.parameters()))
    assert [row["episode_return"] for row in a] != [row["episode_return"] for row in c]
    # the seed fixes the environments' start states as well as the sampled actions
    starts = [rollouts[i].obs[0] for i in (0, 3, 6)]
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])


# ---------------------------------------------------------------- ppo_edu.animation


def embedded_frames(html: str) -> list[str]:
    return re.findall(r'frames\[\d+\] = "data:image/(\w+);base64,([^"]+)"', html)


def test_animate_has_one_frame_per_image_and_shows_each_image_downscaled():
    colours = [(250, 0, 0), (0, 200, 0), (0, 0, 150), (90, 90, 90), (255, 255, 0)]
    frames = [np.broadcast_to(np.array(c, dtype=np.uint8), (40, 60, 3)).copy() for c in colours]
    anim = animation.animate(frames, title="CartPole-v1: return 5")
    assert not plt.fignum_exists(anim._fig.number)  # closed: only the player shows in a notebook
    ax = anim._fig.axes[0]
    assert ax.get_title() == "CartPole-v1: return 5"
    assert ax.images[0].get_array().shape == (20, 30, 3)  # downscale=2
    assert len(list(anim.new_frame_seq())) == 5
    html = anim.to_jshtml()
    assert "new Array(5)" in html
    embedded = embedded_frames(html)
    assert len(embedded) == 5
    for (fmt, data), colour in zip(embedded, colours):
        image = mpimg.imread(io.BytesIO(base64.b64decode(data)), format=fmt)
        centre = image[image.shape[0] // 2 + 5, image.shape[1] // 2, :3]
        np.testing.assert_allclose(centre * 255, colour, atol=2)


def test_animate_refuses_no_frames():
    with pytest.raises(ValueError, match="no frames to animate"):
        animation.animate([])


@pytest.mark.parametrize("bad", [{"downscale": 0}, {"downscale": -1}, {"fps": 0}, {"fps": 2.5}])
def test_animate_refuses_a_scale_or_rate_that_is_not_a_count(bad):
    from ppo_edu import animation

    frames = [np.zeros((8, 8, 3), dtype=np.uint8)] * 2
    name, value = next(iter(bad.items()))  # -1 flipped the image, 0 failed inside numpy or matplotlib
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1, got {value!r}"):
        animation.animate(frames, **bad)



@pytest.mark.parametrize("env_id, obs_dim, n_actions, reward", [("CartPole-v1", 4, 2, 1), ("Acrobot-v1", 6, 3, -1)])
def test_episode_html_is_a_player_of_the_recorded_frames_titled_with_return_and_length(
        monkeypatch, env_id, obs_dim, n_actions, reward):
    titles = []
    real_animate = animation.animate

    def spy(frames, **kw):
        titles.append((len(frames), kw.get("title")))
        return real_animate(frames, **kw)

    monkeypatch.setattr(animation, "animate", spy)
    torch.manual_seed(0)
    html = animation.episode_html(ActorCritic(obs_dim, n_actions), seed=0, max_steps=6, frame_every=2,
                                  env_id=env_id)
    # the start and steps 2, 4, 6 (neither episode can end within 6 steps); Acrobot pays -1 a step
    assert titles == [(4, f"{env_id}: return {6 * reward} in 6 steps")]
    assert "new Array(4)" in html.data
    embedded = embedded_frames(html.data)
    assert len(embedded) == 4 and {fmt for fmt, _ in embedded} == {"png"}


# ---------------------------------------------------------------- ppo_edu.rlhf.memory.format_table


def test_format_table_aligns_names_and_prints_gib_with_two_decimals():
    rows = [("weights", 0.4636), ("activations, one minibatch", 12.3456), ("total", 12.8092)]
    assert format_table(rows) == (
        "weights                        0.46 GiB\n"
        "activations, one minibatch    12.35 GiB\n"
        "total                         12.81 GiB"
    )


def test_format_table_of_the_memory_estimate_has_one_line_per_row():
    rows = estimate_ppo_memory(batch_size=64, mini_batch_size=16, query_length=12, response_length=32)
    lines = format_table(rows).splitlines()
    assert len(lines) == len(rows) and len({len(line) for line in lines}) == 1  # one column of GiB
    for line, (what, size) in zip(lines, rows):
        assert line.startswith(what) and line.endswith(f"{size:7.2f} GiB")
        assert float(line[len(what):].split()[0]) == round(size, 2)
    assert lines[-1].startswith("total")


def test_memory_estimate_refuses_counts_that_are_not_counts():
    with pytest.raises(ValueError, match="mini_batch_size must be an integer >= 1, got -16"):
        estimate_ppo_memory(mini_batch_size=-16)  # used to return a total of 1.65 GiB
    with pytest.raises(ValueError, match=r"mini_batch_size \(128\) is larger than batch_size \(64\)"):
        estimate_ppo_memory(batch_size=64, mini_batch_size=128)
    with pytest.raises(TypeError, match="bytes_per_value"):  # fp32 only: see the docstring
        estimate_ppo_memory(bytes_per_value=2)



def test_plots_refuse_a_key_no_record_has_and_a_window_below_one():
    from ppo_edu.plots import plot_history, plot_runs, smoothed

    history = [{"env_steps": 256, "episode_return": 20.0}, {"env_steps": 512, "episode_return": 30.0}]
    with pytest.raises(KeyError, match="no record of the history has 'episode_retrun'"):
        plot_history(history, keys=["episode_retrun"])  # drew an empty panel
    with pytest.raises(KeyError, match="'env_steps'"):
        plot_history([{"iteration": 0, "episode_return": 1.0}], keys=["episode_return"])
    with pytest.raises(KeyError, match="'approx_kl'"):
        plot_runs({"PPO": [history]}, "approx_kl")
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        smoothed([1.0, 2.0], 0)  # returned all NaN
    plt.close("all")


def test_rating_plots_refuse_scores_that_are_not_numbers():
    from ppo_edu.lm.plots import accuracy_by_gap

    ratings = [2.0, -2.0, 0.5]
    with pytest.raises(TypeError, match="VADER must be numbers"):
        plot_scores_vs_ratings(ratings, {"VADER": ["0.1", "0.2", "0.3"]})
    with pytest.raises(TypeError, match="scores must be numbers"):
        accuracy_by_gap(ratings, [True, False, True])


def test_a_constant_scorer_whose_std_rounds_above_zero_is_still_constant():
    fig = plot_scores_vs_ratings([2.0, -2.0] * 50, {"constant": [0.1] * 100})
    assert "r undefined" in fig.axes[0].get_title()
