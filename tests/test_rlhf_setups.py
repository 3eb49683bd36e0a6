"""The Colab path (hub ``gpt2`` + a hub sentiment classifier) through local directories:
``save_pretrained`` -> the same ``from_pretrained`` calls, then one PPO step."""

import pytest
import torch
from transformers import DistilBertForSequenceClassification

from ppo_edu.lm import load_lm
from ppo_edu.lm.testing import save_random_sentiment_classifier
from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf.setups import COLAB, OFFLINE, judge_fn, load_prompts, load_reward_fn
from ppo_edu.rlhf.toy import toy_lm, toy_reward_model, toy_tokenizer


@pytest.fixture(scope="module")
def colab_like_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    tok = toy_tokenizer()
    lm_dir, clf_dir, rm_dir = root / "gpt2", root / "distilbert-imdb", root / "rm"
    toy_lm(tok).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    save_random_sentiment_classifier(clf_dir, tok)
    toy_reward_model(tok).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    return lm_dir, clf_dir, rm_dir


def test_the_two_setups_name_the_models_of_the_lesson():
    assert OFFLINE["policy"] == "tiny" and OFFLINE["prompt_split"] == "test"
    assert COLAB["policy"] == "gpt2" and COLAB["reward"] == "lvwerra/distilbert-imdb"
    # prompts from reviews neither reward model trained on: the snippets' and IMDB's test splits
    assert COLAB["prompts"] == "imdb" and COLAB["prompt_split"] == "test"


def _classifier_logits(clf_dir, texts):
    from transformers import AutoTokenizer

    clf = DistilBertForSequenceClassification.from_pretrained(clf_dir).eval()
    enc = AutoTokenizer.from_pretrained(clf_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return clf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def test_a_sentiment_classifier_gives_its_positive_logit(colab_like_dirs):
    _, clf_dir, _ = colab_like_dirs
    texts = ["the movie was great", "a dull film"]
    scores = load_reward_fn(str(clf_dir))(texts)
    logits = _classifier_logits(clf_dir, texts)
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # so the wrong column would be caught
    torch.testing.assert_close(scores, logits[:, 1])  # POSITIVE is label 1 in this classifier


def test_the_positive_logit_is_found_by_its_label_not_its_index(colab_like_dirs, tmp_path):
    """A classifier that lists POSITIVE first: the reward is column 0, not the conventional 1."""
    from transformers import AutoTokenizer

    _, clf_dir, _ = colab_like_dirs
    clf = DistilBertForSequenceClassification.from_pretrained(clf_dir)
    clf.config.id2label, clf.config.label2id = {0: "POSITIVE", 1: "NEGATIVE"}, {"POSITIVE": 0, "NEGATIVE": 1}
    clf.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(clf_dir).save_pretrained(tmp_path)
    texts = ["the movie was great", "a dull film"]
    torch.testing.assert_close(load_reward_fn(str(tmp_path))(texts), _classifier_logits(clf_dir, texts)[:, 0])


def test_a_classifier_gets_only_the_inputs_its_forward_takes(colab_like_dirs, tmp_path):
    """A tokenizer that also returns token_type_ids (as BERT-style ones and transformers 4.x's
    fast tokenizers do) must not crash DistilBERT, whose forward() has no such argument."""
    from transformers import AutoTokenizer

    _, clf_dir, _ = colab_like_dirs
    tok = AutoTokenizer.from_pretrained(clf_dir)
    tok.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tok.init_kwargs["model_input_names"] = tok.model_input_names
    DistilBertForSequenceClassification.from_pretrained(clf_dir).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = ["the movie was great", "a dull film"]
    assert "token_type_ids" in AutoTokenizer.from_pretrained(tmp_path)(texts)
    torch.testing.assert_close(load_reward_fn(str(tmp_path))(texts), load_reward_fn(str(clf_dir))(texts))


def test_a_scalar_reward_model_directory_is_read_as_a_reward_model(colab_like_dirs):
    from ppo_edu.lm import load_reward_model
    from ppo_edu.lm.reward import reward_model_scores

    _, _, rm_dir = colab_like_dirs
    texts = ["the movie was great", "a dull film"]
    scores = load_reward_fn(str(rm_dir))(texts)
    rm, tok = load_reward_model(str(rm_dir))
    with torch.no_grad():  # the score at the EOS appended to each text, as the reward model is read
        torch.testing.assert_close(scores, reward_model_scores(rm, tok, texts))
    assert scores.shape == (2,) and not torch.equal(scores[0], scores[1])


def test_colab_path_runs_a_ppo_step_from_local_directories(colab_like_dirs):
    lm_dir, clf_dir, _ = colab_like_dirs
    lm, tokenizer = load_lm(str(lm_dir))
    policy = PolicyWithValueHead(lm)
    trainer = RLHFTrainer(policy, frozen_reference(policy), tokenizer, load_reward_fn(str(clf_dir)),
                          ["the movie", "a film", "i loved"],
                          RLHFConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=6),
                          judge_fn=judge_fn)
    batches, rollout = [], trainer.rollout
    trainer.rollout = lambda prompts: batches.append(rollout(prompts)) or batches[-1]
    stats = trainer.step()
    # policy == reference: zero up to rounding (MKL's SSE4/AVX kernels give 2e-7)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6) and -1 <= stats["judge"] <= 1
    # the score is the classifier's POSITIVE logit of the batch's prompt + response texts, and the
    # judge VADER's compound score of the same texts
    texts = batches[0].texts
    assert len(texts) == 4 and all(t.startswith(("the movie", "a film", "i loved")) for t in texts)
    assert stats["score"] == pytest.approx(_classifier_logits(clf_dir, texts)[:, 1].mean().item(), abs=1e-5)
    assert stats["judge"] == pytest.approx(judge_fn(texts).mean().item())


def test_the_judge_is_vaders_compound_score():
    scores = judge_fn(["A great, wonderful film.", "A terrible, boring mess.", "A film."])
    assert scores.dtype == torch.float32 and scores.shape == (3,)
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0


def test_offline_prompts_are_openings_of_held_out_snippets():
    from ppo_edu.lm import load_snippets

    from ppo_edu.rlhf.setups import shuffled_reviews

    prompts = load_prompts("snippets", "test")
    texts, _ = shuffled_reviews("snippets", "test")
    assert len(prompts) > 1000
    assert all(t.startswith(p) for p, t in zip(prompts[:50], texts[:50]))
    held_out = set(load_snippets("test")[0])
    assert all(t in held_out for t in texts) and not held_out & set(load_snippets("train")[0])
    assert all(2 <= len(p.split()) <= 4 for p in prompts)


def test_prompts_are_shuffled_so_the_held_out_head_is_not_one_sided():
    """The test split is stored positive half first: an unshuffled head of 256 prompts came
    from positive snippets only (98%), so lesson 6 evaluated on one-sided prompts."""
    from ppo_edu.lm import load_reviews
    from ppo_edu.rlhf.setups import shuffled_reviews

    _, stored = load_reviews("snippets", "test")
    assert (stored[:256] > 0).mean() > 0.9  # the stored order is one-sided: why we shuffle
    texts, ratings = shuffled_reviews("snippets", "test", seed=0)
    assert sorted(texts) == sorted(load_reviews("snippets", "test")[0])  # a permutation
    head = ratings[:256]
    assert 0.35 < (head > 0).mean() < 0.65
    assert abs(head.mean() - stored.mean()) < 0.4
    assert shuffled_reviews("snippets", "test", limit=10, seed=0)[0] == texts[:10]
    assert shuffled_reviews("snippets", "test", seed=1)[0] != texts
    assert load_prompts("snippets", "test", seed=0) == load_prompts("snippets", "test", seed=0)
    assert load_prompts("snippets", "test", seed=1) != load_prompts("snippets", "test", seed=0)


@pytest.mark.parametrize("limit", [0, -5, 2.5])
def test_a_bad_prompt_limit_is_refused(limit):
    with pytest.raises(ValueError, match="limit"):
        load_prompts("snippets", "test", limit=limit)


def test_shuffled_reviews_takes_numpy_integers_and_refuses_booleans():
    import numpy as np

    from ppo_edu.rlhf.setups import shuffled_reviews

    texts, labels = shuffled_reviews(limit=np.int64(5))
    assert len(texts) == len(labels) == 5
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        shuffled_reviews(limit=True)  # used to be accepted as 1


def test_held_out_prompts_share_only_the_documented_few_strings_with_training():
    """load_prompts documents that short openings repeat across snippets: 5 of the first 256
    test-split prompts (seed 0) also occur among the other 795. More would mean a leak."""
    prompts = load_prompts("snippets", "test", seed=0)
    held_out, training = prompts[:256], set(prompts[256:])
    assert len(prompts) == 1051
    assert sorted(p for p in held_out if p in training) == sorted(
        ["Manages to", "The film", "In the", "There is", "The kind of"])


def test_a_reward_repo_that_names_its_own_code_is_refused_not_run(tmp_path):
    """load_reward_fn reads the config with trust_remote_code=False: transformers would
    otherwise *ask* whether to run the repo's code, and a "y" typed into Jupyter runs it."""
    import json
    import sys

    marker = tmp_path / "EXECUTED"
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "evilcfg", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}, "num_labels": 2}))
    (tmp_path / "configuration_evil.py").write_text(
        "from transformers import PretrainedConfig\n"
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evilcfg'\n")
    stdin = sys.stdin
    sys.stdin = __import__("io").StringIO("y\n" * 5)  # answers "yes" if anything asks
    try:
        with pytest.raises(ValueError, match="trust_remote_code"):
            load_reward_fn(str(tmp_path))
    finally:
        sys.stdin = stdin
    assert not marker.exists()


def test_a_revision_goes_to_the_classifier_and_is_refused_where_it_means_nothing(colab_like_dirs):
    _, clf_dir, _ = colab_like_dirs
    with pytest.raises(ValueError, match="revision='main' is for a sentiment classifier on the hub"):
        load_reward_fn("tiny", revision="main")  # a scalar reward model: silently ignored before
    with pytest.raises(ValueError, match="revision='refs/pr/5' applies to hub ids, not to the local directory"):
        load_reward_fn(str(clf_dir), revision="refs/pr/5")


def test_the_prompt_seed_also_draws_the_length_of_each_opening():
    """``seed`` picks both the order of the reviews and how many words (2-4) each opening
    keeps. An opening_prompts call left on its default seed would cut every seed's reviews
    with the same word counts, so a seed sweep would vary the prompts less than it says."""
    from ppo_edu.rlhf.evaluation import opening_prompts
    from ppo_edu.rlhf.setups import shuffled_reviews

    texts, _ = shuffled_reviews("snippets", "test", seed=3)
    prompts = load_prompts("snippets", "test", seed=3)
    assert prompts == opening_prompts(texts, seed=3)
    assert prompts != opening_prompts(texts, seed=0)  # same reviews, other word counts
