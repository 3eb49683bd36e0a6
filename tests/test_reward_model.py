"""The Bradley-Terry loss, preference pairs, reward functions, and the shipped reward model."""

import json

import numpy as np
import pytest
import torch

from ppo_edu.lm import (
    TINY_LM_DIR,
    TINY_RM_DIR,
    bradley_terry_loss,
    load_reward_model,
    load_snippets,
    make_preference_pairs,
    pairwise_accuracy,
    reward_fn_from_model,
    sentiment_reward_fn,
    vader_compound,
)
from ppo_edu.lm.bradley_terry import count_preference_pairs
from ppo_edu.lm.reward import encode_for_reward, last_token_scores, reward_model_scores
from ppo_edu.lm.testing import save_random_gpt2, small_tokenizer
from ppo_edu.lm.training import reward_accuracy, train_reward_model


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()


@pytest.fixture()
def random_rm(tmp_path, tokenizer):
    return load_reward_model(save_random_gpt2(tmp_path / "rm", tokenizer, kind="rm"))


# ----------------------------------------------------------------------------- Bradley-Terry
def test_bradley_terry_loss_is_negative_log_sigmoid_of_the_gap():
    chosen, rejected = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])
    want = -torch.log(torch.sigmoid(chosen - rejected)).mean()
    assert torch.allclose(bradley_terry_loss(chosen, rejected), want)


def test_bradley_terry_loss_is_finite_for_huge_gaps():
    loss = bradley_terry_loss(torch.tensor([-150.0]), torch.tensor([150.0]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(300.0)


def test_bradley_terry_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_bradley_terry_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="non-empty"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))


def test_preference_pairs_respect_the_margin():
    ratings = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 3.9])
    pairs = make_preference_pairs(ratings, margin=1.0)
    brute = {(i, j) for i in range(6) for j in range(6) if ratings[i] - ratings[j] >= 1.0}
    assert {tuple(p) for p in pairs.tolist()} == brute
    assert (ratings[pairs[:, 0]] - ratings[pairs[:, 1]] >= 1.0).all()


def test_preference_pairs_subsample_is_seeded_and_unique():
    ratings = np.linspace(-4, 4, 200)
    a = make_preference_pairs(ratings, 1.0, max_pairs=500, seed=3)
    b = make_preference_pairs(ratings, 1.0, max_pairs=500, seed=3)
    assert np.array_equal(a, b) and len({tuple(p) for p in a.tolist()}) == 500


def test_a_preference_pair_subset_comes_in_the_order_its_docstring_states():
    ratings = np.linspace(-4, 4, 200)
    total = count_preference_pairs(ratings, 1.0)
    drawn = make_preference_pairs(ratings, 1.0, max_pairs=total // 4, seed=0)  # at most half: drawn order
    assert not (np.diff(drawn[:, 0]) >= 0).all()
    listed = make_preference_pairs(ratings, 1.0, max_pairs=3 * total // 4, seed=0)  # most: index order
    assert np.array_equal(listed, np.unique(listed, axis=0))  # sorted by chosen, then rejected


def test_preference_pairs_reject_bad_ratings_and_margins():
    with pytest.raises(ValueError, match="outside the human rating scale"):
        make_preference_pairs([0.0, 5.0])
    with pytest.raises(ValueError, match="margin"):
        make_preference_pairs([0.0, 1.0], margin=0)
    with pytest.raises(ValueError, match="no pair"):
        make_preference_pairs([0.0, 0.1], margin=1.0, max_pairs=3)


def test_pairwise_accuracy_counts_ties_as_half():
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    assert pairwise_accuracy(np.array([3.0, 2.0, 1.0]), pairs) == 1.0
    assert pairwise_accuracy(np.array([1.0, 2.0, 3.0]), pairs) == 0.0
    assert pairwise_accuracy(np.zeros(3), pairs) == 0.5


def test_preference_pairs_reject_a_margin_that_is_not_a_positive_number():
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(ValueError, match="margin must be a finite number > 0"):
            make_preference_pairs([0.0, 2.0], margin=bad)
        with pytest.raises(ValueError, match="margin must be a finite number > 0"):
            make_preference_pairs([0.0, 2.0], margin=bad, max_pairs=1)


def test_preference_pairs_without_any_qualifying_pair_raise_on_both_paths():
    for max_pairs in (None, 1):
        with pytest.raises(ValueError, match="no pair of ratings differs by at least margin=1"):
            make_preference_pairs([0.0, 0.5, 0.9], margin=1.0, max_pairs=max_pairs)


def test_preference_pairs_never_return_fewer_than_asked():
    ratings = [-2.0, 0.0, 2.0]  # qualifying pairs: (1, 0), (2, 0), (2, 1)
    assert count_preference_pairs(ratings, 1.0) == 3
    with pytest.raises(ValueError, match="max_pairs=4 but only 3 pairs"):
        make_preference_pairs(ratings, 1.0, max_pairs=4)
    every = make_preference_pairs(ratings, 1.0, max_pairs=3)
    assert {tuple(p) for p in every.tolist()} == {(1, 0), (2, 0), (2, 1)}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_pairs must be a positive integer"):
            make_preference_pairs(ratings, 1.0, max_pairs=bad)


def test_preference_pairs_find_rare_pairs_exactly():
    # 1 rating in 501 stands out: 500 of 251,001 ordered pairs qualify, too rare for
    # rejection sampling; the exact path must still return the number asked for.
    ratings = np.array([0.0] * 500 + [2.0])
    pairs = make_preference_pairs(ratings, 1.0, max_pairs=7, seed=1)
    assert pairs.shape == (7, 2) and len({tuple(p) for p in pairs.tolist()}) == 7
    assert (pairs[:, 0] == 500).all() and (ratings[pairs[:, 0]] - ratings[pairs[:, 1]] >= 1).all()


def test_preference_pairs_are_exact_across_row_chunks():
    ratings = np.random.default_rng(0).uniform(-4, 4, size=2500)  # more rows than one chunk
    pairs = make_preference_pairs(ratings, 1.5)
    chosen, rejected = np.nonzero(ratings[:, None] - ratings[None, :] >= 1.5)
    assert np.array_equal(pairs, np.stack([chosen, rejected], axis=1))
    assert count_preference_pairs(ratings, 1.5) == len(pairs)


def test_pairwise_accuracy_rejects_nan_scores_instead_of_counting_them_wrong():
    pairs = np.array([[0, 1], [2, 1]])
    with pytest.raises(ValueError, match=r"scores\[2\] = nan is not finite"):
        pairwise_accuracy(np.array([1.0, 0.0, np.nan]), pairs)
    with pytest.raises(ValueError, match="not finite"):
        pairwise_accuracy(torch.tensor([1.0, float("inf"), 0.0]), pairs)
    with pytest.raises(ValueError, match="one-dimensional"):
        pairwise_accuracy(np.zeros((3, 1)), pairs)


def test_pairwise_accuracy_rejects_indices_outside_the_scores():
    scores = np.array([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"pairs\[1\] = \[-1, 0\] is not a pair of indices in \[0, 3\)"):
        pairwise_accuracy(scores, np.array([[0, 1], [-1, 0]]))  # -1 must not mean "the last one"
    with pytest.raises(ValueError, match=r"pairs\[0\] = \[3, 0\]"):
        pairwise_accuracy(scores, np.array([[3, 0]]))
    with pytest.raises(ValueError, match="integer indices"):
        pairwise_accuracy(scores, np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        pairwise_accuracy(scores, np.zeros((0, 2), dtype=int))


# ----------------------------------------------------------------------------- scoring with a reward model
def test_last_token_scores_handles_left_and_right_padding():
    scores = torch.arange(12.0).view(2, 6)
    right = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    assert last_token_scores(scores, right).tolist() == [2.0, 11.0]
    assert last_token_scores(scores, right.flip(1)).tolist() == [5.0, 11.0]


def test_reward_model_score_is_read_at_the_eos_of_each_text(random_rm):
    # Regression for "score placed on a PAD after EOS" (TRL #3750): compute the score head
    # at every position by hand and compare with the reward at the EOS.
    model, tok = random_rm
    texts = ["A gripping drama.", "The worst film of the year, boring and meandering."]
    rewards = reward_fn_from_model(model, tok)(texts)
    for text, reward in zip(texts, rewards):
        ids = torch.tensor([tok(text)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            hidden = model.transformer(ids).last_hidden_state
            assert reward.item() == pytest.approx(model.score(hidden)[0, -1, 0].item(), abs=1e-5)


def test_reward_does_not_depend_on_the_batch_it_is_padded_in(random_rm):
    model, tok = random_rm
    reward_fn = reward_fn_from_model(model, tok, batch_size=8)
    short = "Fun."
    alone = reward_fn([short])
    padded = reward_fn([short, "A long, winding, overwrought and entirely forgettable melodrama."])
    assert torch.allclose(alone, padded[:1], atol=1e-5)


def test_text_that_spells_a_special_token_is_read_as_characters(random_rm):
    # A policy's decoded response is tokenized again for the reward model: if "<|pad|>" or
    # "<|endoftext|>" in it became the pad or EOS id, the policy could put a control token the
    # reward model never saw as input in front of it (and move its score). Each text ends in
    # exactly one EOS, the one encode_for_reward appends, and never contains the pad id.
    model, tok = random_rm
    texts = ["Fun.<|pad|>", "Awful.<|endoftext|>Great fun!", "Fun." + tok.eos_token]
    for text, ids in zip(texts, encode_for_reward(tok, texts, max_length=64)):
        assert tok.pad_token_id not in ids, text
        assert ids.index(tok.eos_token_id) == len(ids) - 1, text
        assert tok.decode(ids[:-1]) == text
    reward_fn = reward_fn_from_model(model, tok)
    assert not torch.allclose(reward_fn(["Fun."]), reward_fn(["Fun." + tok.eos_token]), atol=1e-6)


def test_reward_fn_restores_training_mode_and_returns_cpu_floats(random_rm):
    model, tok = random_rm
    model.train()
    rewards = reward_fn_from_model(model, tok)(["Fun.", "Dull."])
    assert model.training
    assert rewards.shape == (2,) and rewards.dtype == torch.float32 and rewards.device.type == "cpu"
    assert not rewards.requires_grad


def test_empty_text_is_a_clear_error(random_rm):
    model, tok = random_rm
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        reward_fn_from_model(model, tok)(["Fine.", "  "])
    with pytest.raises(TypeError, match="list of strings"):
        reward_fn_from_model(model, tok)("Fine.")


def test_text_longer_than_the_context_errors_or_is_truncated_when_asked(random_rm):
    model, tok = random_rm  # n_positions = 64
    long_text = "great fun " * 100
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        reward_fn_from_model(model, tok)([long_text])
    rewards = reward_fn_from_model(model, tok, truncate=True)([long_text])
    assert rewards.shape == (1,) and torch.isfinite(rewards).all()
    # truncated as documented: the first 63 tokens, then the EOS the score is read at
    ids = tok(long_text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        kept = model(input_ids=torch.tensor([ids[:63] + [tok.eos_token_id]])).logits[0, 0]
        cut = model(input_ids=torch.tensor([ids[:64]])).logits[0, 0]  # no EOS: a different score
    assert rewards[0] == pytest.approx(kept.item(), abs=1e-5)
    assert abs(kept.item() - cut.item()) > 1e-3


def test_reward_model_with_pad_equal_to_eos_is_refused(random_rm):
    # GPT-2's usual setup, in the tokenizer and the model alike: the score would be read before
    # the EOS it belongs on (the model's last non-pad token). With only the model's pad changed,
    # the "pad must match the tokenizer's" clause raised instead, and the test could not fail.
    model, tok = random_rm
    tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.eos_token_id
    assert tok.pad_token_id == model.config.pad_token_id == tok.eos_token_id
    with pytest.raises(ValueError, match="different from EOS"):
        reward_model_scores(model, tok, ["Fun."])


def test_train_reward_model_learns_a_separable_toy_preference(random_rm):
    model, tok = random_rm
    texts = ["great fun", "a true delight", "funny and touching", "boring mess", "the worst film", "dull"] * 6
    ratings = np.array([3.0, 3.0, 2.5, -3.0, -3.5, -2.0] * 6)
    calls = []

    def loss_fn(chosen, rejected):
        calls.append(len(chosen))
        return bradley_terry_loss(chosen, rejected)

    history = train_reward_model(model, tok, texts, ratings, epochs=12, batch_size=36, lr=3e-3, warmup_steps=1,
                                 loss_fn=loss_fn, progress=False)
    assert calls and all(n > 0 for n in calls)  # the learner's loss is what trains it
    assert history[-1]["loss"] < history[0]["loss"]
    assert reward_accuracy(model, tok, texts[:6], ratings[:6])["accuracy"] == 1.0


def test_train_reward_model_rejects_ratings_off_the_scale(random_rm):
    model, tok = random_rm
    with pytest.raises(ValueError, match="outside the human rating scale"):
        train_reward_model(model, tok, ["a", "b"], [0.0, 9.0], progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"margin": 0.0}, "margin must be a finite number > 0"),
    ({"margin": -1.0}, "margin must be a finite number > 0"),
    ({"margin": float("nan")}, "margin must be a finite number > 0"),
    ({"epochs": 0}, "epochs must be a finite number > 0"),
    ({"epochs": -2}, "epochs must be a finite number > 0"),
    ({"batch_size": 1}, "batch_size must be >= 2"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
    ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
    ({"eval_texts": ["fun", "dull"], "eval_ratings": [2.0, -2.0]}, "eval_every=0"),
    ({"eval_every": 5}, "no eval_texts"),
    ({"eval_texts": ["fun", "dull"], "eval_every": 1}, "without eval_ratings"),
    ({"eval_texts": ["fun", "dull"], "eval_ratings": [2.0], "eval_every": 1}, "2 eval_texts but 1 eval_ratings"),
])
def test_train_reward_model_rejects_bad_settings_before_training(random_rm, kwargs, message):
    model, tok = random_rm
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        train_reward_model(model, tok, ["great fun", "dull", "fine"], [3.0, -3.0, 0.0], progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "it trained before refusing"


# ----------------------------------------------------------------------------- the shipped reward model
def test_shipped_reward_model_beats_vader_on_held_out_pairs():
    model, tok = load_reward_model("tiny")
    log = json.loads((TINY_RM_DIR / "training_log.json").read_text())
    texts, ratings = load_snippets("test")
    result = reward_accuracy(model, tok, texts, ratings, margin=1.0)
    vader = pairwise_accuracy(vader_compound(texts), make_preference_pairs(ratings, 1.0))
    assert result["accuracy"] == pytest.approx(log["test_accuracy"], abs=1e-4)
    assert vader == pytest.approx(log["vader_test_accuracy"], abs=1e-4)
    assert result["accuracy"] > vader


# ----------------------------------------------------------------------------- the Colab judges, offline
def test_sentiment_reward_fn_returns_the_positive_logit_of_a_local_classifier(tmp_path, tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=1, n_heads=2,
                              max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                              id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    classifier = DistilBertForSequenceClassification(config)
    classifier.save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    reward_fn = sentiment_reward_fn(str(tmp_path / "clf"))
    texts = ["A gripping drama.", "Dull.", "Fun.<|pad|>"]  # the last one's "<|pad|>" is characters
    got = reward_fn(texts)
    enc = tokenizer(texts, padding=True, return_tensors="pt", split_special_tokens=True)
    assert tokenizer.pad_token_id not in enc["input_ids"][2][enc["attention_mask"][2].bool()]
    with torch.no_grad():
        want = classifier.eval()(**enc).logits[:, 1]
    assert got.shape == (3,) and torch.allclose(got, want, atol=1e-5)


def test_sentiment_reward_fn_refuses_tiny_and_missing_dirs():
    with pytest.raises(ValueError, match="tiny"):
        sentiment_reward_fn("tiny")
    with pytest.raises(FileNotFoundError):
        sentiment_reward_fn("./no-such-classifier")


def test_vader_compound_orders_obvious_sentiment():
    scores = vader_compound(["A wonderful, moving masterpiece.", "A boring, awful mess.", ""])
    assert scores.shape == (3,) and scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    with pytest.raises(TypeError):
        vader_compound("one string")


def test_vader_on_the_test_pairs_is_about_point_seven():
    texts, ratings = load_snippets("test")
    accuracy = pairwise_accuracy(vader_compound(texts), make_preference_pairs(ratings, 1.0))
    assert accuracy == pytest.approx(0.695, abs=0.01)


def test_train_reward_model_script_runs_end_to_end(tmp_path, load_tool):
    from ppo_edu.lm import TINY_LM_DIR
    from ppo_edu.lm.models import load_tokenizer

    tool = load_tool("train_reward_model")
    lm_dir = save_random_gpt2(tmp_path / "lm", load_tokenizer(TINY_LM_DIR), n_positions=128, n_layer=1)
    out = tmp_path / "rm"
    assert tool.main(["--lm", str(lm_dir), "--out", str(out), "--epochs", "1", "--train-snippets", "128",
                      "--threads", "1"]) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert 0 <= log["test_accuracy"] <= 1 and log["vader_test_accuracy"] == pytest.approx(0.695, abs=0.01)
    # a random subset, not the head of the split (its positive half comes first: 122 of the first 128)
    assert log["train_snippets_used"] == 128 and 0.3 < log["train_positive_share"] < 0.7
    import hashlib

    import transformers

    assert log["lm_sha256"] == hashlib.sha256((lm_dir / "model.safetensors").read_bytes()).hexdigest()
    assert log["transformers"] == transformers.__version__ and {"torch", "tokenizers", "numpy"} <= set(log)
    model, tok = load_reward_model(out)
    assert model.config.num_labels == 1 and tok.pad_token_id != tok.eos_token_id


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--margin", "0"], "--margin must be a finite number > 0"),
    (["--eval-margin", "nan"], "--eval-margin must be a finite number > 0"),
    (["--batch-size", "1"], "--batch-size must be >= 2"),
    (["--train-snippets", "1"], "--train-snippets must be 0"),
    (["--train-snippets", "100000"], "the train split has only"),  # a traceback from load_reviews before
    (["--eval-margin", "9"], "--eval-margin 9.0: no pair of ratings differs"),  # failed after epoch 1
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
    (["--lm", "gpt2"], "must be a local model directory"),  # failed copying its tokenizer at the end
])
def test_train_reward_model_script_rejects_bad_options_by_name(tmp_path, capsys, args, message, load_tool):
    tool = load_tool("train_reward_model")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(args + ["--out", str(tmp_path / "rm")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "rm").exists()


def test_train_reward_model_script_never_writes_over_the_model_it_starts_from(tmp_path, capsys, load_tool):
    import shutil

    from ppo_edu.lm import TINY_LM_DIR

    tool = load_tool("train_reward_model")
    lm = shutil.copytree(TINY_LM_DIR, tmp_path / "lm")
    before = (lm / "model.safetensors").read_bytes()
    for args in (["--lm", str(lm), "--out", str(lm)], ["--out", str(TINY_LM_DIR)]):
        with pytest.raises(SystemExit) as exit_info:  # the LM became a GPT2ForSequenceClassification
            tool.main(args)
        assert exit_info.value.code == 2 and "writing there would overwrite it" in capsys.readouterr().err
    assert (lm / "model.safetensors").read_bytes() == before
    other = shutil.copytree(TINY_LM_DIR, tmp_path / "another-lm")  # not --lm, but a language model all the same
    with pytest.raises(SystemExit):
        tool.main(["--lm", str(lm), "--out", str(other), "--epochs", "1", "--train-snippets", "2"])
    assert "holds a GPT2LMHeadModel, and this script writes a GPT2ForSequenceClassification" in capsys.readouterr().err


def test_train_reward_model_script_writes_to_scratch_by_default(load_tool):
    from pathlib import Path

    tool = load_tool("train_reward_model")
    out = Path(tool.RMConfig().out)
    root = Path(__file__).resolve().parents[1]
    assert out != TINY_RM_DIR and out.parent == root / "runs"
    assert Path(tool.RMConfig().lm) == TINY_LM_DIR


@pytest.mark.parametrize("side", ["r_chosen", "r_rejected"])
def test_bradley_terry_loss_refuses_non_finite_scores(side):
    scores = {"r_chosen": torch.tensor([1.0, 2.0]), "r_rejected": torch.tensor([0.0, 0.0])}
    scores[side] = torch.tensor([0.5, float("nan")])
    with pytest.raises(ValueError, match=rf"{side}\[1\] = nan is not finite"):
        bradley_terry_loss(**scores)


def test_accuracy_by_gap_refuses_nan_and_misshaped_scores():
    from ppo_edu.lm.plots import accuracy_by_gap

    ratings = [-2.0, 0.0, 2.0]
    assert accuracy_by_gap(ratings, [0.0, 1.0, 2.0])[0][2] == 1.0  # every pair ordered right
    with pytest.raises(ValueError, match="scores\\[0\\] = nan is not finite"):
        accuracy_by_gap(ratings, [float("nan"), 0.0, 1.0])
    with pytest.raises(ValueError, match="one entry per rating"):
        accuracy_by_gap(ratings, np.zeros((3, 2)))  # two-class logits, not one score per text
    with pytest.raises(ValueError, match="one entry per rating"):
        accuracy_by_gap(ratings, [0.0, 1.0])


def test_reward_accuracy_refuses_texts_and_ratings_of_different_lengths(random_rm):
    model, tok = random_rm
    with pytest.raises(ValueError, match="3 texts but 2 ratings"):
        reward_accuracy(model, tok, ["great fun", "dull", "fine"], [3.0, -3.0])


def test_perplexity_of_no_texts_is_a_clear_error(random_rm):
    from ppo_edu.lm.training import perplexity

    model, tok = random_rm
    with pytest.raises(ValueError, match="texts is an empty list"):
        perplexity(model, tok, [])


def test_texts_too_long_for_the_context_are_refused_before_training(random_rm, tokenizer, tmp_path):
    """Caught up front, not at the first batch or evaluation that holds them (after steps of
    training): a training or evaluation text, in train_reward_model and sft_train."""
    from ppo_edu.lm import load_lm
    from ppo_edu.lm.training import sft_train, train_reward_model

    model, tok = random_rm  # n_positions = 64
    long_text = "great fun " * 100
    weights = [p.detach().clone() for p in model.parameters()]
    texts, ratings = ["good", "bad", "fine", "awful"], [2.0, -2.0, 1.0, -3.0]
    with pytest.raises(ValueError, match=r"texts\[2\] is \d+ tokens with its EOS, longer than the model's context of 64"):
        train_reward_model(model, tok, texts[:2] + [long_text] + texts[3:], ratings, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"eval_texts\[1\] is \d+ tokens with its EOS"):
        train_reward_model(model, tok, texts, ratings, batch_size=2, eval_texts=["ok", long_text],
                           eval_ratings=[0.0, 1.0], eval_every=1, progress=False)
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))  # nothing trained
    lm, lm_tok = load_lm(save_random_gpt2(tmp_path / "lm", tokenizer))
    with pytest.raises(ValueError, match=r"eval_texts\[0\] is \d+ tokens with EOS twice"):
        sft_train(lm, lm_tok, ["a good film"] * 40, steps=5, batch_size=2, block=16,
                  eval_texts=[long_text], eval_every=5, progress=False)


def test_pairwise_accuracy_refuses_strings_booleans_and_self_pairs():
    # ["3", "2", "1"] scored 1.0 and [True, False, False] 0.75; a pair (0, 0) counted as a tie
    for scores in (["3", "2", "1"], [True, False, False], torch.tensor([True, False, False])):
        with pytest.raises(TypeError, match="scores must be numbers"):
            pairwise_accuracy(scores, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"pairs\[1\] = \[2, 2\] compares a text with itself"):
        pairwise_accuracy([3.0, 2.0, 1.0], [[0, 1], [2, 2]])
    # a bfloat16 tensor is numbers (numpy has no bfloat16: it is widened, not refused)
    assert pairwise_accuracy(torch.tensor([3.0, 2.0, 1.0], dtype=torch.bfloat16), [[0, 1], [1, 2]]) == 1.0


def test_last_token_scores_refuses_a_mask_that_is_not_zero_or_one():
    with pytest.raises(ValueError, match="attention_mask must be boolean or hold only 0 and 1"):
        last_token_scores(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 0.25, 0]]))


def test_reward_accuracy_of_a_constant_scorer_has_no_pearson_r_and_restores_the_mode(random_rm):
    model, tok = random_rm
    with torch.no_grad():
        model.score.weight.zero_()
    model.train()
    result = reward_accuracy(model, tok, ["Fun.", "Dull.", "Fine."], [2.0, -2.0, 0.0])
    assert result["accuracy"] == 0.5 and result["pearson_r"] is None and model.training


def test_reward_accuracy_of_a_constant_nonzero_scorer_has_no_pearson_r(random_rm, monkeypatch):
    # 100 scores of 0.1 have a std of about 3e-17, not 0: a std() == 0 test let NaN through
    import ppo_edu.lm.training as training

    monkeypatch.setattr(training, "reward_model_scores", lambda model, tok, texts, **kw: torch.full((len(texts),), 0.1))
    model, tok = random_rm
    result = reward_accuracy(model, tok, ["Fun."] * 100, [2.0, -2.0] * 50)
    assert result["accuracy"] == 0.5 and result["pearson_r"] is None


# ---------------------------------------------- preference pairs, the positive label, train_reward_model's loop
def test_sampled_preference_pairs_include_pairs_exactly_margin_apart():
    """A pair qualifies at a gap of exactly ``margin`` (>=, as the docstring says), on the
    rejection-sampling path too, not only when all pairs are listed: over seeds, a single
    sampled pair of [0, 1, 3] at margin 1 is each of the three qualifying pairs, (1, 0) included."""
    ratings = [0.0, 1.0, 3.0]
    assert count_preference_pairs(ratings, 1.0) == 3  # 2 * max_pairs <= 3: the sampling path
    drawn = {tuple(make_preference_pairs(ratings, 1.0, max_pairs=1, seed=seed)[0].tolist()) for seed in range(30)}
    assert drawn == {(1, 0), (2, 0), (2, 1)}


def test_listed_preference_pairs_subsample_depends_on_the_seed():
    """When most pairs are wanted, all qualifying pairs are listed and a seeded random subset
    is kept (in index order): not the first ``max_pairs`` of the list whatever the seed,
    which would never train on the pairs at the end of it."""
    ratings = [-2.0, 0.0, 2.0]  # qualifying pairs: (1, 0), (2, 0), (2, 1); 2 of 3 is the listing path
    drawn = {tuple(map(tuple, make_preference_pairs(ratings, 1.0, max_pairs=2, seed=seed).tolist()))
             for seed in range(10)}
    assert drawn == {((1, 0), (2, 0)), ((1, 0), (2, 1)), ((2, 0), (2, 1))}


def test_a_two_label_classifier_with_generic_names_rewards_label_1():
    """With labels LABEL_0/LABEL_1 (no "pos..." name), the positive class is index 1, the
    convention IMDB classifiers follow (label 1 = positive): reading index 0 would reward
    the policy for negative reviews."""
    from transformers import PretrainedConfig

    from ppo_edu.lm.reward import _positive_index

    config = PretrainedConfig(num_labels=2)
    assert set(config.id2label.values()) == {"LABEL_0", "LABEL_1"}
    assert _positive_index(config, None) == 1
    assert _positive_index(config, "LABEL_0") == 0  # an explicit label still wins
    with pytest.raises(ValueError, match="cannot tell which of the labels"):
        _positive_index(PretrainedConfig(num_labels=3), None)


def test_sentiment_reward_fn_reads_column_1_of_a_classifier_with_generic_labels(tmp_path, tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=1, n_heads=2,
                              max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, num_labels=2)
    classifier = DistilBertForSequenceClassification(config)
    assert classifier.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    classifier.save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    texts = ["A gripping drama.", "Dull."]
    got = sentiment_reward_fn(str(tmp_path / "clf"))(texts)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = classifier.eval()(**enc).logits
    assert not torch.allclose(logits[:, 0], logits[:, 1], atol=1e-3)  # so column 0 would be caught
    torch.testing.assert_close(got, logits[:, 1], atol=1e-5, rtol=0)


def test_reward_fn_scores_in_eval_mode_even_when_the_model_is_training(random_rm):
    """A reward model left in train mode (as train_reward_model leaves it mid-run, or a
    user's .train()) has dropout on: its scores would be noisy. reward_fn_from_model scores
    with dropout off, so repeated calls agree with each other and with eval-mode scores."""
    model, tok = random_rm
    assert model.config.resid_pdrop > 0  # dropout that train mode would switch on
    texts = ["A gripping drama.", "Dull.", "Funny and touching, a true delight."]
    model.eval()
    reference = reward_fn_from_model(model, tok)(texts)
    model.train()
    reward_fn = reward_fn_from_model(model, tok)
    first, second = reward_fn(texts), reward_fn(texts)
    assert model.training
    torch.testing.assert_close(first, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(second, reference, atol=1e-6, rtol=0)


def _ramp_ratings(n):
    """n distinct texts rated a full point apart: every two of them form a pair at margin 1."""
    texts = [f"{word} film" for word in ("great", "fine", "dull", "awful", "funny", "slow", "warm", "cold")[:n]]
    return texts, np.arange(n, dtype=np.float64) - (n - 1) / 2


def test_train_reward_model_warms_the_learning_rate_up_to_lr(random_rm):
    """Linear warmup reaches lr at the last warmup step: lr/3, 2 lr/3, lr for 3 warmup steps
    (a first step at lr 0 would be a wasted step), then cosine decay."""
    model, tok = random_rm
    texts, ratings = _ramp_ratings(8)
    history = train_reward_model(model, tok, texts, ratings, epochs=2, batch_size=4, lr=0.03,
                                 warmup_steps=3, progress=False)
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.02, 0.03, 0.03])


def test_train_reward_model_pairs_texts_rated_exactly_margin_apart(random_rm):
    """Inside a batch, a gap of exactly ``margin`` makes a pair, as make_preference_pairs
    counts it (>=): otherwise the up-front check passes and then no batch ever trains."""
    model, tok = random_rm
    history = train_reward_model(model, tok, ["great fun", "dull"], [1.0, 0.0], margin=1.0, batch_size=2,
                                 warmup_steps=0, progress=False)
    assert history[0]["pairs"] == 1 and "loss" in history[0]


def test_reward_accuracy_uses_only_pairs_at_least_margin_apart(random_rm):
    """Held-out accuracy is measured on the pairs the margin selects: with gaps of 1.5 and
    margin 2, 3 of the 6 ordered pairs, not the 6 that the default margin of 1 gives."""
    model, tok = random_rm
    ratings = [0.0, 1.5, 3.0, -1.5]
    assert count_preference_pairs(ratings, 2.0) == 3 and count_preference_pairs(ratings, 1.0) == 6
    result = reward_accuracy(model, tok, ["great fun", "a true delight", "funny and touching", "dull"],
                             ratings, margin=2.0)
    assert result["pairs"] == 3


def test_train_reward_model_scores_every_text_once_an_epoch(random_rm, monkeypatch):
    """One epoch walks through one permutation of the texts: each text is in exactly one
    batch (the cursor moves on after each batch), so none is trained on twice and none missed."""
    from ppo_edu.lm import training

    scored = []

    def recording_scores(model, tok, texts, **kwargs):
        scored.extend(texts)
        return reward_model_scores(model, tok, texts, **kwargs)

    monkeypatch.setattr(training, "reward_model_scores", recording_scores)
    model, tok = random_rm
    texts, ratings = _ramp_ratings(8)
    history = train_reward_model(model, tok, texts, ratings, epochs=1, batch_size=2, warmup_steps=0, progress=False)
    assert len(history) == 4 and all(h["pairs"] == 1 for h in history)
    assert sorted(scored) == sorted(texts)


def test_train_reward_model_is_reproducible_from_its_seed(tmp_path, tokenizer, seed_reaches_both_sources):
    """The same seed from the same weights gives the same run, whatever the global random
    state: the batch order (numpy) and the dropout masks (torch) both come from ``seed``."""
    import copy

    model, tok = load_reward_model(save_random_gpt2(tmp_path / "rm", tokenizer, kind="rm"))
    assert model.config.resid_pdrop > 0  # dropout draws from torch's generator while training
    texts, ratings = _ramp_ratings(8)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        copy_ = copy.deepcopy(model)
        history = train_reward_model(copy_, tok, texts, ratings, epochs=2, batch_size=2, lr=1e-3,
                                     warmup_steps=0, seed=5, progress=False)
        runs.append((history, [p.detach().clone() for p in copy_.parameters()]))
    (h1, w1), (h2, w2) = runs
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))

    # and the seed reaches both: another seed changes the run, and still does with the batch
    # order held fixed, when only the dropout masks can differ, or with torch's seed held fixed
    def run(seed):
        return train_reward_model(copy.deepcopy(model), tok, texts, ratings, epochs=2, batch_size=2, lr=1e-3,
                                  warmup_steps=0, seed=seed, progress=False)

    assert run(6) != h1
    seed_reaches_both_sources(run, 5, 6)


def test_the_reward_model_decays_only_the_matrices_and_every_group_follows_the_schedule(
        tmp_path, tokenizer, adamw_spy):
    model, tok = load_reward_model(save_random_gpt2(tmp_path / "rm", tokenizer, kind="rm"))
    texts, ratings = _ramp_ratings(8)
    history = train_reward_model(model, tok, texts, ratings, epochs=2, batch_size=4, lr=0.03, warmup_steps=3,
                                 weight_decay=0.05, progress=False)
    (optimizer,) = adamw_spy.built
    adamw_spy.check_decay(optimizer, model, 0.05)
    steps = [h for h in history if "loss" in h]  # the rows of training steps
    assert len(optimizer.lrs) == len(steps) > 3
    assert optimizer.lrs == [[h["lr"]] * 2 for h in steps]
