"""Tests written for mutants of the tools/ scripts that the other tests let through: their input
checks, the bundle's bytes and provenance, what build_notebooks strips and when --check fails,
and the training scripts' schedule, best-epoch choice and log (training replaced by stubs, or
cut to a few steps on a few snippets)."""

import dataclasses
import gzip
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


# ================================================================== tools/_tool_checks.py
@pytest.fixture(scope="module")
def checks(load_tool):
    return load_tool("_tool_checks")


@pytest.mark.parametrize("config_text, message", [
    ("{not json", "its config.json is not a JSON object"),  # a JSONDecodeError escaped as a traceback
    ("{}", "holds a model of unknown architecture, and this script writes a GPT2LMHeadModel"),  # was replaced
])
def test_a_model_directory_whose_config_names_no_architecture_is_not_replaced(checks, tmp_path, config_text, message):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text(config_text)
    assert message in checks.out_dir_problem(out, writes="GPT2LMHeadModel")


def test_a_file_or_a_folder_of_other_files_is_no_place_for_a_model(checks, tmp_path):
    """Refused by out_dir_problem itself: without these checks the training scripts' own tests
    only hung, training into the file or folder they were given."""
    afile, busy, empty = tmp_path / "afile", tmp_path / "busy", tmp_path / "empty"
    afile.write_text("x")
    busy.mkdir()
    (busy / "notes.txt").write_text("somebody's notes")
    empty.mkdir()
    assert checks.out_dir_problem(afile).startswith(f"--out {afile} is a file; pass a folder")
    assert checks.out_dir_problem(busy).startswith(f"--out {busy} holds other files and is not a model directory")
    assert checks.out_dir_problem(empty) is None and checks.out_dir_problem(tmp_path / "new") is None


def test_a_protected_folder_is_recognised_under_another_spelling(checks, tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text('{"architectures": ["GPT2ForSequenceClassification"]}')
    problem = checks.out_dir_problem(tmp_path / "x" / ".." / "lm", {"--lm": lm}, writes="GPT2ForSequenceClassification")
    assert problem and "is --lm: writing there would overwrite it" in problem


def test_library_versions_are_the_installed_ones(checks):
    import tokenizers
    import transformers

    assert checks.library_versions() == {"torch": torch.__version__, "transformers": transformers.__version__,
                                         "tokenizers": tokenizers.__version__, "numpy": np.__version__}


@dataclasses.dataclass
class _Settings:
    share: float = 0.5
    """the share of the tokens kept, 50% by default (a percent sign in a field's docstring)."""
    steps: int = 3
    """how many
    steps."""
    flag: bool = False
    ...  # noqa: PIE790, PYI013 -- an expression after a field that is not its docstring


def test_config_options_help_survives_a_percent_sign(checks):
    import argparse

    parser = argparse.ArgumentParser()
    checks.add_config_options(parser, _Settings)
    text = " ".join(parser.format_help().split())
    assert "50% by default" in text and "(default: 0.5)" in text and "how many steps. (default: 3)" in text
    assert "--flag FLAG (default: False)" in text
    assert parser.parse_args(["--steps", "4"]).steps == 4


# ================================================================== tools/build_data.py
@pytest.fixture()
def build(load_tool):
    return load_tool("build_data")


def _redirect(build, monkeypatch, tmp_path):
    for name in ("BUNDLE", "MANIFEST", "LICENSE_OUT"):
        monkeypatch.setattr(build, name, tmp_path / getattr(build, name).name)
    monkeypatch.setattr(build, "DATA_DIR", tmp_path)


def test_writing_the_shipped_records_again_gives_the_shipped_bundle_byte_for_byte(build, monkeypatch, tmp_path):
    """The bundle's bytes are reproducible (gzip level 9, mtime 0, no file name, UTF-8 JSON with
    the keys in order), so the shipped records written again hash to the shipped manifest's
    SHA-256; the manifest records the rows per split, the sdist's own SHA-256, and the licence."""
    from ppo_edu.lm import data
    from ppo_edu.lm.data import load_snippet_records

    _redirect(build, monkeypatch, tmp_path)
    sdist = tmp_path / "sdist.tar.gz"
    sdist.write_bytes(b"a stand-in for the sdist")
    manifest = build.write_bundle(load_snippet_records("all"), sdist, "MIT licence text  \n\n")
    shipped = json.loads(data.MANIFEST.read_text())
    assert manifest["sha256"] == shipped["sha256"] == hashlib.sha256(build.BUNDLE.read_bytes()).hexdigest()
    assert build.BUNDLE.read_bytes() == data.BUNDLE.read_bytes()
    assert manifest["splits"] == shipped["splits"] == {"train": 8484, "validation": 1060, "test": 1061}
    assert manifest["source_sdist_sha256"] == hashlib.sha256(b"a stand-in for the sdist").hexdigest()
    assert json.loads(build.MANIFEST.read_text()) == manifest
    assert build.LICENSE_OUT.read_text() == "MIT licence text\n"


def test_a_rebuilt_bundle_is_the_same_bytes_whenever_it_is_built(build, monkeypatch, tmp_path):
    """gzip's header holds a modification time: it must be 0, not the build's clock."""
    _redirect(build, monkeypatch, tmp_path)
    sdist = tmp_path / "sdist"
    sdist.write_bytes(b"x")
    rows = [{"id": 1, "split": "train", "text": "Très bien.", "rating": 1.0, "sd": 0.5, "ratings": [1, 1]}]
    rows.append({"id": 2, "split": "test", "text": "Bof.", "rating": -0.5, "sd": 1.0, "ratings": [0, -1]})
    build.write_bundle(rows, sdist, "licence")
    raw = build.BUNDLE.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # MTIME
    assert "Très bien." in gzip.decompress(raw).decode("utf-8")  # not \u00e8
    build.write_bundle(rows, sdist, "licence")  # built again: byte for byte the same
    assert build.BUNDLE.read_bytes() == raw


def test_normalise_strips_the_ends(build):
    assert build.normalise("  Good \t fun\n ") == "Good fun"


def test_parse_keeps_each_field_and_checks_each_rating(build):
    rows = build.parse("1\t1.333333\tText.\n", "1\t1.333333\t0.471405\t[1, 1, 2]\n")
    assert rows[0]["sd"] == pytest.approx(0.471405) and rows[0]["rating"] == 1.333333
    with pytest.raises(SystemExit, match="outside"):  # one rater at 5, their mean 4.0 within the scale
        build.parse("1\t4.0\tText.\n", "1\t4.0\t1.0\t[5, 3]\n")
    with pytest.raises(SystemExit, match="outside"):  # within the 1e-6 tolerance of the raters, but > 4
        build.parse("1\t4.0000005\tText.\n", "1\t4.0\t0.0\t[4, 4]\n")
    with pytest.raises(SystemExit, match="differs"):  # 0.005 off the raters' mean
        build.parse("1\t1.005\tText.\n", "1\t1.0\t0.0\t[1, 1]\n")
    with pytest.raises(SystemExit, match="empty text"):
        build.parse("1\t1.0\t &nbsp; \n", "1\t1.0\t0.0\t[1, 1]\n")


def test_an_sdist_whose_hash_only_starts_like_the_pinned_one_is_refused(build, monkeypatch, tmp_path):
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    fake.write_bytes(b"an edited copy")
    digest = hashlib.sha256(b"an edited copy").hexdigest()
    monkeypatch.setattr(build, "SDIST_SHA256", digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:])
    with pytest.raises(SystemExit, match="is not the"):
        build.check_sdist(fake)
    monkeypatch.setattr(build, "SDIST_SHA256", digest)
    build.check_sdist(fake)


# ================================================================== tools/build_notebooks.py
@pytest.fixture()
def notebooks(load_tool):
    return load_tool("build_notebooks")


def test_strip_removes_outputs_counts_execution_times_and_widget_state(notebooks):
    nb = {"metadata": {"widgets": {"state": 1}, "kernelspec": {"name": "python3"}},
          "cells": [{"cell_type": "code", "execution_count": 7, "outputs": [{"text": "42"}],
                     "metadata": {"execution": {"start": "t"}, "tags": ["keep"]}, "source": ["x = 42"]},
                    {"cell_type": "markdown", "metadata": {"execution": {"start": "t"}}, "source": ["# Hi"]}]}
    out = notebooks.strip(nb)
    assert out["metadata"] == {"kernelspec": {"name": "python3"}}
    assert out["cells"][0] == {"cell_type": "code", "execution_count": None, "outputs": [],
                               "metadata": {"tags": ["keep"]}, "source": ["x = 42"]}
    assert out["cells"][1] == {"cell_type": "markdown", "metadata": {}, "source": ["# Hi"]}
    assert nb["cells"][0]["outputs"] == [{"text": "42"}]  # the input is not modified


@pytest.mark.parametrize("lines, message", [
    (["# BEGIN SOLUTION", "x = 1", "# BEGIN SOLUTION", "y = 2", "# END SOLUTION"], "nested"),
    (["x = 1", "# END SOLUTION", "y = 2"], "# END SOLUTION without"),
])
def test_misplaced_solution_markers_are_an_error(notebooks, lines, message):
    with pytest.raises(ValueError, match=message):
        notebooks.stub_lines(lines, "nb cell 3")


def test_only_code_cells_are_stubbed(notebooks):
    """A markdown cell may show the markers to the reader; it is copied as it is."""
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# BEGIN SOLUTION\n", "text\n", "# END SOLUTION"]},
                    {"cell_type": "code", "metadata": {}, "source": ["# BEGIN SOLUTION\n", "x = 1\n", "# END SOLUTION"]}]}
    ex = notebooks.exercise_version(nb, "01_x.ipynb")
    assert ex["cells"][1]["source"] == ["# BEGIN SOLUTION\n", "text\n", "# END SOLUTION"]
    assert "x = 1" not in "".join(ex["cells"][2]["source"])


def test_check_reports_a_stale_or_orphan_exercise_and_changes_nothing(notebooks, monkeypatch, tmp_path, capsys):
    """--check exits 1 and writes nothing when an exercise differs from what the solution gives
    or has no solution notebook; without --check the files are rewritten and the orphan deleted."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_cpi_surrogate.ipynb", nbs)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    monkeypatch.setattr(notebooks, "NOTEBOOKS", nbs)
    monkeypatch.setattr(notebooks, "EXERCISES", nbs / "exercises")
    monkeypatch.setattr(notebooks, "README", tmp_path / "README.md")
    assert notebooks.main([]) == 0
    assert notebooks.main(["--check"]) == 0
    exercise = nbs / "exercises" / "01_cpi_surrogate.ipynb"
    good = exercise.read_text()
    exercise.write_text(good.replace("NotImplementedError", "print"))
    orphan = nbs / "exercises" / "09_gone.ipynb"
    orphan.write_text("{}")
    capsys.readouterr()
    assert notebooks.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "out of date: notebooks/exercises/01_cpi_surrogate.ipynb" in out
    assert "out of date: notebooks/exercises/09_gone.ipynb" in out
    assert exercise.read_text() != good and orphan.exists()  # --check changes nothing
    assert notebooks.main([]) == 0
    assert exercise.read_text() == good and not orphan.exists()
    assert notebooks.main(["--check"]) == 0


# ================================================================== tools/train_reward_model.py
@pytest.fixture()
def rm_tool(load_tool):
    return load_tool("train_reward_model")


@pytest.mark.parametrize("field, value, message", [
    ("threads", 0, "--threads must be >= 1"),
    ("warmup_steps", -1, "--warmup-steps must be >= 0"),
    ("dropout", 1.0, "--dropout must be in [0, 1)"),
    ("lr", 0.0, "--lr must be a finite number > 0"),
    ("lr", float("inf"), "--lr must be a finite number > 0"),
    ("train_snippets", 1, "--train-snippets must be 0 (all) or >= 2"),
    ("eval_margin", 7.4, "(in the test split)"),  # the validation split has a pair 7.42 apart, the test split none
])
def test_reward_model_settings_that_cannot_work_are_refused(rm_tool, tmp_path, field, value, message):
    cfg = rm_tool.RMConfig(out=str(tmp_path / "rm"), **{field: value})
    assert message in (rm_tool.check_config(cfg) or "")


def test_the_reward_model_script_never_writes_over_the_shipped_language_model(rm_tool, tmp_path):
    """Started from another language model, --out may still not be the shipped one: the error
    names it (without that entry the shipped LM was refused only as "a GPT2LMHeadModel")."""
    from ppo_edu.lm import TINY_LM_DIR
    from ppo_edu.lm.models import load_tokenizer
    from ppo_edu.lm.testing import save_random_gpt2

    lm_dir = save_random_gpt2(tmp_path / "lm", load_tokenizer(TINY_LM_DIR), n_positions=128, n_layer=1)
    problem = rm_tool.check_config(rm_tool.RMConfig(lm=str(lm_dir), out=str(TINY_LM_DIR)))
    assert problem == f"--out {TINY_LM_DIR} is the shipped language model: writing there would overwrite it"


def test_the_reward_model_script_keeps_its_best_epoch_and_logs_it(rm_tool, monkeypatch, tmp_path):
    """With training and validation replaced by stubs: each epoch is a fresh call with its own
    seed and the warmup in the first epoch only; the epoch with the best validation accuracy
    (the first of a tie) is the one saved, reported and logged; VADER's test accuracy is on
    the test pairs; the training-score statistics are of the saved model's scores."""
    from ppo_edu.lm import TINY_LM_DIR
    from ppo_edu.lm import bradley_terry as bt
    from ppo_edu.lm.data import load_snippets
    from ppo_edu.lm.models import load_reward_model, load_tokenizer
    from ppo_edu.lm.reward import reward_model_scores, vader_compound
    from ppo_edu.lm.testing import save_random_gpt2

    lm_dir = save_random_gpt2(tmp_path / "lm", load_tokenizer(TINY_LM_DIR), n_positions=128, n_layer=1)
    calls = []

    def ramp(weight):  # not uniform: a uniform head scores every layer-normed text about 0
        return torch.linspace(-1.0, 2.0, weight.numel()).reshape(weight.shape)

    def train_reward_model(model, tokenizer, texts, ratings, **kwargs):
        calls.append(kwargs)
        with torch.no_grad():  # epoch k leaves the score head's weights at k times a fixed ramp
            model.score.weight.copy_(len(calls) * ramp(model.score.weight))
        return [{"loss": 1.0 / len(calls), "batch_accuracy": 0.5}]

    val = iter([0.6, 0.8, 0.8, 0.7])

    def reward_accuracy(model, tokenizer, texts, ratings, margin):
        accuracy = next(val, None)
        if accuracy is None:  # the test split, after the best epoch was loaded
            weight = model.score.weight.detach()
            return {"accuracy": float(weight.sum() / ramp(weight).sum()) / 10, "pairs": 5, "pearson_r": 0.25}
        return {"accuracy": accuracy, "pairs": 3, "pearson_r": 0.1}

    texts = ["A fine film.", "Dull.", "It was okay.", "Great fun!"]
    monkeypatch.setattr(rm_tool, "train_reward_model", train_reward_model)
    monkeypatch.setattr(rm_tool, "reward_accuracy", reward_accuracy)
    monkeypatch.setattr(rm_tool, "load_reviews", lambda *args, **kwargs: (texts, np.array([2.0, -3.0, 0.0, 3.5])))
    out = tmp_path / "rm"
    assert rm_tool.main(["--lm", str(lm_dir), "--out", str(out), "--epochs", "4", "--seed", "7",
                         "--warmup-steps", "30"]) == 0
    assert [c["seed"] for c in calls] == [7, 8, 9, 10] and [c["warmup_steps"] for c in calls] == [30, 0, 0, 0]
    assert all(c["epochs"] == 1 for c in calls)
    log = json.loads((out / "training_log.json").read_text())
    assert log["best_epoch"] == 2 and log["val_accuracy"] == 0.8 and len(log["history"]) == 4
    model, tok = load_reward_model(out)
    assert torch.allclose(model.score.weight, 2 * ramp(model.score.weight))  # the best epoch's, not the last's
    assert log["test_accuracy"] == pytest.approx(0.2)
    test_texts, test_r = load_snippets("test")
    assert log["vader_test_accuracy"] == pytest.approx(
        bt.pairwise_accuracy(vader_compound(test_texts), bt.make_preference_pairs(test_r, 1.0)))
    assert log["train_positive_share"] == 0.5  # a rating of exactly 0 is not positive
    model.eval()
    with torch.no_grad():
        scores = reward_model_scores(model, tok, texts).numpy()
    assert log["train_score_mean"] == pytest.approx(float(scores.mean()), rel=1e-4, abs=1e-6)
    assert scores.std() > 0.01
    assert log["train_score_std"] == pytest.approx(float(scores.std()), rel=1e-4)  # the population std


# ================================================================== tools/train_tiny_lm.py
@pytest.fixture()
def lm_tool(load_tool):
    return load_tool("train_tiny_lm")


def test_the_learning_rate_schedule_by_hand(lm_tool):
    """Linear warmup to lr over warmup_steps (step 0 already at lr / warmup_steps), then a
    cosine from lr down to min_lr_ratio * lr over the remaining steps."""
    cfg = lm_tool.LMConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    got = [lm_tool.lr_at(step, 14, cfg) for step in (0, 3, 4, 9, 14)]
    assert got == pytest.approx([0.25, 1.0, 1.0, 0.1 + 0.9 * 0.5, 0.1])
    assert lm_tool.lr_at(6, 14, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))


@pytest.mark.parametrize("field, value, message", [
    ("vocab_size", 257, "--vocab-size must be >= 258"),  # the 256 bytes and the two specials
    ("n_positions", 1, "--n-positions must be >= 2"),
    ("min_lr_ratio", 1.5, "--min-lr-ratio must be in [0, 1]"),
    ("grad_clip", float("inf"), "--grad-clip must be a finite number > 0"),
])
def test_language_model_settings_that_cannot_work_are_refused(lm_tool, tmp_path, field, value, message):
    cfg = lm_tool.LMConfig(out=str(tmp_path / "lm"), **{field: value})
    assert message in (lm_tool.check_config(cfg) or "")


SMALL = ["--n-embd", "32", "--n-layer", "1", "--n-head", "2", "--vocab-size", "300"]


def _few_snippets(lm_tool, monkeypatch, n_train=60):
    from ppo_edu.lm.data import load_snippets

    subsets = {"train": n_train, "validation": 5, "test": 5}
    monkeypatch.setattr(lm_tool, "load_snippets", lambda split: tuple(x[:subsets[split]] for x in load_snippets(split)))
    return {split: load_snippets(split)[0][:n] for split, n in subsets.items()}


def test_the_lm_script_refuses_a_context_one_short_of_the_longest_snippet(lm_tool, monkeypatch, tmp_path):
    """A snippet needs its tokens plus two <|endoftext|> (before and after it)."""
    from ppo_edu.lm.reward import text_ids
    from ppo_edu.lm.tokenizer import train_tokenizer

    texts = _few_snippets(lm_tool, monkeypatch, n_train=40)
    longest = max(len(ids) + 2 for ids in text_ids(train_tokenizer(texts["train"], 300, model_max_length=64),
                                                   texts["train"] + texts["validation"] + texts["test"]))
    with pytest.raises(SystemExit, match=f"a snippet needs {longest} positions > n_positions={longest - 1}"):
        lm_tool.main(SMALL + ["--n-positions", str(longest - 1), "--epochs", "1", "--out", str(tmp_path / "lm")])


def test_the_lm_script_keeps_its_best_epoch_and_logs_its_figures(lm_tool, monkeypatch, tmp_path):
    """Three epochs on 60 snippets, with the validation and test NLL replaced by a stub: the
    epoch of lowest validation perplexity is the one saved (its weights, its number from 1,
    its perplexity), the test bits per character count each text's closing <|endoftext|> as a
    character, the training tokens count one <|endoftext|> per snippet, each epoch takes
    min(steps that fit, --max-steps-per-epoch) steps, each clipped at --grad-clip, and weight
    decay applies to the matrices only (every other parameter is trained without it)."""
    from transformers import GPT2LMHeadModel

    from ppo_edu.lm.reward import text_ids

    texts = _few_snippets(lm_tool, monkeypatch)
    nll = iter([(200.0, 100), (100.0, 100), (150.0, 100), (120.0, 100)])  # epochs 1-3, then the test split
    snapshots = []

    def text_nll(model, tokenizer, texts):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(nll)

    groups, clips = [], []

    class AdamW(torch.optim.AdamW):
        def __init__(self, params, **kwargs):
            params = list(params)
            groups.extend(params)
            super().__init__(params, **kwargs)

    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(parameters, max_norm, *args, **kwargs):
        clips.append(max_norm)
        return real_clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(lm_tool, "text_nll", text_nll)
    monkeypatch.setattr(torch.optim, "AdamW", AdamW)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    out = tmp_path / "lm"
    assert lm_tool.main(SMALL + ["--epochs", "3", "--batch-size", "8", "--n-positions", "256",
                                 "--max-steps-per-epoch", "5", "--warmup-steps", "1", "--grad-clip", "0.5",
                                 "--out", str(out)]) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert log["best_epoch"] == 2 and log["val_ppl"] == pytest.approx(math.e)
    assert log["test_ppl"] == pytest.approx(math.exp(1.2))
    chars = sum(len(t) for t in texts["test"]) + len(texts["test"])
    assert log["test_bits_per_char"] == pytest.approx(120.0 / math.log(2) / chars)
    saved = GPT2LMHeadModel.from_pretrained(out).state_dict()
    name = "transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(snapshots[1][name], snapshots[2][name])
    assert torch.equal(saved[name], snapshots[1][name])  # epoch 2's weights, not epoch 3's
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    train_tokens = sum(len(ids) + 1 for ids in text_ids(tokenizer, texts["train"]))
    assert log["train_tokens"] == train_tokens
    fit = train_tokens // 256 // 8
    assert 1 <= fit < 5 and clips == [0.5] * (3 * fit)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and all(p.ndim >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(GPT2LMHeadModel.from_pretrained(out).parameters()))
