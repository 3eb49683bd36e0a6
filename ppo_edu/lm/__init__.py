"""Language models for lessons 5-6: the data, the tiny GPT-2, the reward model.

- ``ppo_edu.lm.data``           the human-rated movie-review snippets (VADER sdist) and IMDB (Colab)
- ``ppo_edu.lm.models``         ``load_lm`` / ``load_reward_model`` (the shipped tiny models or hub ``gpt2``)
- ``ppo_edu.lm.reward``         reward functions: the reward model, a hub sentiment classifier, VADER
- ``ppo_edu.lm.bradley_terry``  the Bradley-Terry pairwise loss, preference pairs, pairwise accuracy
- ``ppo_edu.lm.training``       SFT and reward-model training loops, perplexity, sampling
- ``ppo_edu.lm.tokenizer``      the byte-level BPE tokenizer (``<|endoftext|>`` = BOS/EOS, ``<|pad|>``)
- ``ppo_edu.lm.plots``          lesson 5's plots
- ``ppo_edu.lm.testing``        small random GPT-2 and DistilBERT directories for tests (the hub path, offline)
"""

from ppo_edu.lm.bradley_terry import (
    bradley_terry_loss,
    make_preference_pairs,
    pairwise_accuracy,
)
from ppo_edu.lm.data import REBUILD_COMMAND, load_reviews, load_snippets
from ppo_edu.lm.models import TINY_LM_DIR, TINY_RM_DIR, load_lm, load_reward_model
from ppo_edu.lm.reward import reward_fn_from_model, sentiment_reward_fn, vader_compound

__all__ = [
    "REBUILD_COMMAND",
    "TINY_LM_DIR",
    "TINY_RM_DIR",
    "bradley_terry_loss",
    "load_lm",
    "load_reviews",
    "load_reward_model",
    "load_snippets",
    "make_preference_pairs",
    "pairwise_accuracy",
    "reward_fn_from_model",
    "sentiment_reward_fn",
    "vader_compound",
]
