"""The two ways to run lesson 6: offline (tiny models, CI) and Colab (``gpt2``, IMDB).

Both go through the same loaders: ``ppo_edu.lm.load_lm`` for the policy, and for the
reward either a scalar reward model (``num_labels == 1``, e.g. the shipped tiny one) or a
sentiment classifier whose positive-class logit is the reward (``lvwerra/distilbert-imdb``,
the seed's choice). A hub id and a local directory take the same code path, which is how
the Colab path is tested offline.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ppo_edu._checks import require_seed
from ppo_edu.rlhf.evaluation import opening_prompts

OFFLINE = dict(policy="tiny", reward="tiny", prompts="snippets", prompt_split="test")
"""The tiny SFT model, its Bradley-Terry reward model, openings of held-out test snippets."""
COLAB = dict(policy="gpt2", reward="lvwerra/distilbert-imdb", prompts="imdb", prompt_split="test")
"""GPT-2 (124M), openings of IMDB *test* reviews, the positive logit of an IMDB sentiment
classifier. The classifier was fine-tuned on IMDB's train split (one epoch of 1,563 steps of
16, its model card says: the 25,000 train reviews), so, as offline, the prompts come from
reviews the reward never trained on (until 2026-12-07 they were train reviews)."""


def load_reward_fn(name: str, device="cpu", revision: str | None = None):
    """``texts -> (B,)`` from a scalar reward model or a sentiment classifier (see above).

    ``revision`` (a sentiment classifier on the hub only) pins a branch, tag, commit or pull
    request, as :func:`ppo_edu.lm.sentiment_reward_fn` takes it. The config is read with
    ``trust_remote_code=False``: a repo whose config names its own code is refused, never
    run (transformers would otherwise ask, and a "y" typed into Jupyter would run it).
    """
    from transformers import AutoConfig

    from ppo_edu.lm import load_reward_model, reward_fn_from_model, sentiment_reward_fn
    from ppo_edu.lm.models import TINY_RM_DIR, resolve

    source = resolve(name, tiny_dir=TINY_RM_DIR)
    hub = {} if revision is None else {"revision": revision}
    if AutoConfig.from_pretrained(source, trust_remote_code=False, **hub).num_labels == 1:
        if revision is not None:
            raise ValueError(f"revision={revision!r} is for a sentiment classifier on the hub; {name!r} "
                             "is a scalar reward model (load_reward_model loads the default revision)")
        model, tokenizer = load_reward_model(name, device)
        return reward_fn_from_model(model, tokenizer, device)
    return sentiment_reward_fn(source, device, revision=revision)


def judge_fn(texts) -> torch.Tensor:
    """The held-out judge: VADER's compound score in [-1, 1]; PPO never trains on it."""
    from ppo_edu.lm import vader_compound

    return torch.as_tensor(np.asarray(vader_compound(texts), dtype=np.float32))


def shuffled_reviews(source: str = "snippets", split: str = "test", limit: int | None = None,
                     seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The review texts of ``source`` and their labels, in an order shuffled with ``seed``.

    Both sources store their splits sorted by sentiment (the snippets' positive half first,
    IMDB by label), so any head of the stored order, such as the first ``limit`` reviews or
    the prompts a lesson holds out for evaluation, would be one-sided. Shuffling first
    makes every head a fair sample of the split.
    """
    from ppo_edu.lm import load_reviews

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    texts, labels = load_reviews(source, split)
    order = np.random.default_rng(require_seed("seed", seed)).permutation(len(texts))[:limit]
    return [texts[i] for i in order], np.asarray(labels)[order]


def load_prompts(source: str = "snippets", split: str = "test", limit: int | None = None,
                 seed: int = 0) -> list[str]:
    """Openings (2-4 words) of the review texts of ``source`` ("snippets" or "imdb"), in a
    seeded random order (see :func:`shuffled_reviews`): ``prompts[:k]`` is a fair sample.

    Each prompt comes from a different review, but short openings repeat across reviews
    ("The film", "In the"), so a held-out head ``prompts[:k]`` can share a few prompt
    strings with the rest: of the test split's first 256, 5 also occur among the other
    795 with seed 0, and 5-15 with seeds 0-4. Nothing is deduplicated.
    """
    texts, _ = shuffled_reviews(source, split, limit, seed)
    return opening_prompts(texts, seed=seed)
