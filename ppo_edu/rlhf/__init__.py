"""RLHF of a causal LM with PPO (lesson 6), on plain ``transformers`` and ``torch``.

One obvious place per step of the algorithm:

- ``generation``  left-padded prompts, sampling with a KV cache, responses that end at EOS
- ``logprobs``    per-token log-probabilities aligned with their tokens, position ids
- ``policy``      pi_theta with a value head, the frozen reference pi_ref
- ``kl``          per-token KL penalty (k1, k3), the adaptive KL controller, and the
                  gradient each placement of the KL gives (``expected_kl_gradients``)
- ``advantages``  per-token rewards, whitening, GAE over response tokens
- ``shaping``     dense rewards from the reward model's score of every prefix (optional)
- ``losses``      the clipped value loss (the policy loss is ``ppo_edu.objectives``)
- ``trainer``     ``RLHFConfig`` and ``RLHFTrainer``: the PPO loop, statistics per step
- ``evaluation``  score, judge, KL and fluency of a policy's samples on fixed prompts
- ``best_of_n``   the yardstick: reward and judge of best-of-n sampling, its KL bound
"""

from ppo_edu.rlhf.advantages import token_gae, token_rewards, whiten
from ppo_edu.rlhf.generation import Generation, encode_prompts, generate, response_mask_from_eos
from ppo_edu.rlhf.kl import (
    AdaptiveKLController,
    FixedKLController,
    full_kl,
    kl_penalty,
    sequence_kl,
)
from ppo_edu.rlhf.logprobs import logprobs_from_logits, position_ids_from_mask, response_logprobs
from ppo_edu.rlhf.losses import clipped_value_loss
from ppo_edu.rlhf.policy import PolicyWithValueHead, frozen_reference
from ppo_edu.rlhf.trainer import RLHFConfig, RLHFTrainer, RolloutBatch

__all__ = [
    "AdaptiveKLController", "FixedKLController", "Generation", "PolicyWithValueHead", "RLHFConfig",
    "RLHFTrainer", "RolloutBatch", "clipped_value_loss", "encode_prompts", "frozen_reference",
    "full_kl", "generate", "kl_penalty", "logprobs_from_logits", "position_ids_from_mask",
    "response_logprobs", "response_mask_from_eos", "sequence_kl", "token_gae", "token_rewards",
    "whiten",
]
