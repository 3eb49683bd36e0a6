"""PPO for a language model: rollout -> rewards -> GAE -> PPO epochs over minibatches.

The loop of lesson 4 with tokens as actions. One :meth:`RLHFTrainer.step`:

1. take ``batch_size`` prompts, sample one response each from pi_theta_old (the current
   policy, no gradients) and score the full texts with the reward model;
2. compute log pi_theta_old, V and log pi_ref for every response token, the per-token KL
   penalty and the rewards (``-beta kl_t``, plus the score on the last token);
3. GAE over the response tokens, advantages whitened over the batch;
4. ``ppo_epochs`` passes over the batch in minibatches: L^CLIP (lesson 2) plus the
   clipped value loss, one Adam step per minibatch, gradients clipped;
5. update beta with the KL controller and log the step's statistics.

Everything stays finite or stops with an error that says where (TRL #229: a NaN or inf in
the policy showed up only as a crash deep in sampling). The learner's own pieces can be
plugged in: ``kl_fn``, ``gae_fn`` and
``value_loss_fn`` have the signatures of :func:`~ppo_edu.rlhf.kl.kl_penalty`,
:func:`~ppo_edu.rlhf.advantages.token_gae` and :func:`~ppo_edu.rlhf.losses.clipped_value_loss`.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ppo_edu._checks import require_bool, require_count, require_seed, require_text_list
from ppo_edu.objectives import approx_kl, clipped_surrogate, masked_mean
from ppo_edu.optim import adam
from ppo_edu.rlhf.advantages import token_gae, token_rewards, whiten
from ppo_edu.rlhf.generation import (
    Generation,
    context_length_of,
    encode_prompts,
    generate,
    require_one_vocabulary,
    require_pad_token,
    require_reference_on,
)
from ppo_edu.rlhf.kl import (
    ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_penalty,
    sequence_kl,
    warn_if_negative,
)
from ppo_edu.rlhf.logprobs import entropy_from_logits, response_logprobs
from ppo_edu.rlhf.losses import LOSS_AGGREGATIONS, clipped_value_loss, token_weights
from ppo_edu.rlhf.policy import PolicyWithValueHead
from ppo_edu.rlhf.shaping import PotentialFn, shape_rewards

RewardFn = Callable[[list[str]], torch.Tensor]


@dataclass
class RLHFConfig:
    """Hyper-parameters of PPO on a language model. Defaults suit the tiny offline GPT-2."""

    batch_size: int = 32  # prompts (= sampled responses) per PPO step
    mini_batch_size: int = 8  # responses per gradient step
    ppo_epochs: int = 4  # passes over each batch
    # Adam step size (1e-4 moved faster but bought less judge gain per nat of KL). Read when the
    # trainer builds its optimizer: changing it later acts only through train(anneal_lr=True)
    learning_rate: float = 5e-5
    max_new_tokens: int = 20  # response length limit (responses also end at EOS)
    temperature: float = 1.0  # sampling temperature; the log-probs use the same one
    add_bos: bool = True  # put BOS (<|endoftext|>) before each prompt, as GPT-2 saw documents
    epsilon: float = 0.2  # clip range of L^CLIP
    value_clip: float = 0.2  # clip range of the value loss
    vf_coef: float = 0.1  # weight of the value loss
    gamma: float = 1.0  # discount over tokens
    lam: float = 0.95  # GAE lambda over tokens
    init_kl_coef: float = 0.2  # beta, the KL penalty's weight (at the start, if adaptive)
    adaptive_kl: bool = True  # Ziegler et al.'s controller moves beta towards target_kl
    target_kl: float = 5.0  # nats per response the adaptive controller aims at
    # samples over which the controller corrects its error (Ziegler et al.: 10k). A 5-minute
    # CPU run sees ~7k samples; with 1k the KL overshot its target to ~9 before beta caught up
    kl_horizon: int = 300
    # the per-token KL in the reward: "k1" (log ratio) or "k3" ((r - 1) - log r). k3 estimates
    # the KL's value, but as a reward it hardly pulls towards the reference (kl.py; warns)
    kl_estimator: str = "k1"
    whiten_rewards: bool = False  # scale per-token rewards to unit variance before GAE (no shift)
    # subtracted from the score of responses with no EOS; the logged "score" includes it, as
    # TRL's objective/scores does, so with a penalty it is no longer the reward model's own
    missing_eos_penalty: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping
    # how L^CLIP averages its per-token terms over a minibatch: "token-mean" (every real token
    # alike, lesson 4's E_t; TRL's PPO), "response-mean" (each response's mean, then the mean
    # over responses, as GRPO's objective is written: a token weighs 1 / its response's length)
    # or "constant" (the sum over tokens / (responses * max_new_tokens): Dr. GRPO). losses.py
    loss_aggregation: str = "token-mean"
    seed: int = 0

    def __post_init__(self):
        for name in ("batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens", "kl_horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        require_seed("seed", self.seed)
        # switches: True or False ("False", a string, is true); numbers: real numbers, not bools
        # (epsilon=True ran as 1.0) or strings ("1e-4" failed a comparison naming no field)
        for name in ("add_bos", "adaptive_kl", "whiten_rewards"):
            require_bool(name, getattr(self, name))
        for name in ("learning_rate", "temperature", "epsilon", "value_clip", "vf_coef", "gamma", "lam",
                     "init_kl_coef", "target_kl", "missing_eos_penalty", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a real number, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}: the advantages are whitened "
                             "over the batch's response tokens, and one response can be a single token")
        if self.mini_batch_size > self.batch_size:
            raise ValueError(f"mini_batch_size ({self.mini_batch_size}) > batch_size ({self.batch_size})")
        if self.kl_estimator not in ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {ESTIMATORS}, got {self.kl_estimator!r}")
        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            raise ValueError(f"loss_aggregation must be one of {LOSS_AGGREGATIONS}, got "
                             f"{self.loss_aggregation!r}")
        # the three clip ranges may be inf (no clipping); every other number must be finite
        for name in ("epsilon", "value_clip", "max_grad_norm"):
            if not getattr(self, name) > 0:  # also refuses NaN
                raise ValueError(f"{name} must be > 0 (inf: no clipping), got {getattr(self, name)}")
        for name in ("learning_rate", "temperature", "target_kl"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("vf_coef", "init_kl_coef", "missing_eos_penalty"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.adaptive_kl and self.init_kl_coef == 0:
            raise ValueError("adaptive_kl=True with init_kl_coef=0: the controller scales beta by a factor, "
                             "so from 0 it never moves. For no KL penalty set adaptive_kl=False.")
        if self.adaptive_kl and self.batch_size >= 5 * self.kl_horizon:
            raise ValueError(f"kl_horizon={self.kl_horizon} with batch_size={self.batch_size}: the controller "
                             "scales beta by 1 + e * batch_size / kl_horizon with e down to -0.2, so it needs "
                             "kl_horizon > batch_size / 5, or beta could reach 0 or flip sign")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """``optimizer``'s step size for the steps that follow, in every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class RolloutBatch:
    """One batch of sampled responses and everything PPO needs about them, ``(B, R)``."""

    generation: Generation
    texts: list[str]  # prompt + response, what the reward model read
    scores: torch.Tensor  # (B,) reward model
    logprobs: torch.Tensor  # log pi_theta_old(y_t | s_t)
    ref_logprobs: torch.Tensor  # log pi_ref(y_t | s_t)
    values: torch.Tensor  # V(s_t) at sampling time
    kl: torch.Tensor  # per-token KL estimate, the one in the penalty
    rewards: torch.Tensor
    advantages: torch.Tensor  # whitened
    returns: torch.Tensor
    entropy: torch.Tensor  # per-token entropy of pi_theta_old

    @property
    def mask(self) -> torch.Tensor:
        return self.generation.response_mask


def _numbers(values, source: str, what: str) -> torch.Tensor:
    """``values`` as a tensor of numbers; strings, booleans and complex numbers are refused
    rather than converted (a classifier's label or a ``score > 0`` test returned by mistake
    would otherwise train silently)."""
    if not isinstance(values, torch.Tensor):
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            raise TypeError(f"{source} returned {array.dtype} values ({describe(values)}); "
                            f"it must return numbers, {what}")
        return torch.as_tensor(array.astype(np.float32))
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{source} returned a {values.dtype} tensor; it must return numbers, {what}")
    return values


def check_scores(scores, batch_size: int, texts: Sequence[str], source: str = "reward_fn") -> torch.Tensor:
    """The reward function's output as a float tensor of shape (B,), or a clear error."""
    scores = _numbers(scores, source, "one float score per text")
    if tuple(scores.shape) != (batch_size,):
        raise ValueError(f"{source} returned shape {tuple(scores.shape)} for {batch_size} texts; "
                         f"it must return one score per text, shape ({batch_size},)")
    scores = scores.detach().float()
    bad = ~torch.isfinite(scores)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{source} returned {scores[i].item()} (not finite) for text {i}: {texts[i]!r}")
    return scores


def check_potentials(potentials, shape: tuple[int, int]) -> torch.Tensor:
    """``potential_fn``'s output as a tensor of ``shape`` (B, R), or a clear error (numbers
    only, as for :func:`check_scores`). Whether the potentials are finite is checked on real
    tokens by ``shape_rewards``."""
    potentials = _numbers(potentials, "potential_fn", "one float potential per response token")
    if tuple(potentials.shape) != tuple(shape):
        raise ValueError(f"potential_fn returned shape {tuple(potentials.shape)}; it must return one "
                         f"potential per response token, shape {tuple(shape)}")
    return potentials.detach()


def _require_callable(name: str, fn, optional: bool = False) -> None:
    if optional and fn is None:
        return
    if not callable(fn):
        raise TypeError(f"{name} must be a function{' or None' if optional else ''}, got "
                        f"{type(fn).__name__} {describe(fn)}")


def _require_per_token(source: str, value, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """A plugged-in function's per-token output: a real (not bool or complex) tensor of
    ``shape`` (B, R), or an error that names the function."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{source} must return {what} as a torch.Tensor of shape {shape}, got "
                        f"{type(value).__name__}")
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{source} returned {what} as a {value.dtype} tensor; it must hold real numbers")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{source} returned {what} of shape {tuple(value.shape)}; it must be one "
                         f"number per response token, shape {tuple(shape)}")
    return value


def check_gae_output(out, shape: tuple[int, ...], source: str = "gae_fn") -> tuple[torch.Tensor, torch.Tensor]:
    """``gae_fn``'s output: the pair (advantages, returns), each a tensor of ``shape`` (B, R)."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        got = (f"a {type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list))
               else f"one {type(out).__name__}")
        raise TypeError(f"{source} must return the pair (advantages, returns), got {got}")
    return tuple(_require_per_token(source, t, shape, name)
                 for t, name in zip(out, ("advantages", "returns")))


def check_value_loss_output(out, source: str = "value_loss_fn") -> tuple[torch.Tensor, object]:
    """``value_loss_fn``'s output: the loss, a one-element floating-point tensor (a 0-d one, the
    mean over the real tokens, not one loss per token), alone or with its clip fraction (a
    number or one-element tensor): ``(loss, clip_fraction)``, NaN for a missing fraction."""
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(f"{source} must return the loss, or the pair (loss, clip_fraction), got a "
                            f"tuple of length {len(out)}")
        loss, fraction = out
    else:
        loss, fraction = out, float("nan")
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{source} must return the loss as a torch.Tensor (connected to the values, "
                        f"for the gradient), got {type(loss).__name__} {describe(loss)}")
    if not loss.is_floating_point():
        raise TypeError(f"{source} returned a {loss.dtype} loss; it must be a floating-point tensor")
    if loss.numel() != 1:
        raise ValueError(f"{source} returned a loss of shape {tuple(loss.shape)}; it must be one number "
                         "(averaged over the real tokens, e.g. with ppo_edu.objectives.masked_mean)")
    if isinstance(fraction, torch.Tensor):
        if fraction.numel() != 1:
            raise ValueError(f"{source} returned a clip fraction of shape {tuple(fraction.shape)}; it "
                             "must be one number")
    elif isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"{source} returned a clip fraction {describe(fraction)}; it must be a number")
    return loss, fraction


class RLHFTrainer:
    """PPO on ``policy`` (a :class:`PolicyWithValueHead`) against a frozen ``reference``.

    ``reward_fn(texts) -> (B,)`` scores full texts (prompt + response); ``judge_fn`` (same
    signature, optional) is only measured, never trained on. ``prompts`` are cycled in a
    shuffled order. ``potential_fn(prompts, generation) -> (B, R)``, optional, turns on
    potential-based reward shaping (:mod:`ppo_edu.rlhf.shaping`): the reward model's score
    of every prefix, e.g. ``reward_model_potentials(rm, tokenizer)``. ``kl_fn``, ``gae_fn`` and
    ``value_loss_fn`` replace the course's pieces (see the module docstring); what each returns
    is checked where it is used, before any gradient step, with an error that names it.

    The optimizer takes ``config.learning_rate`` when the trainer is built: assigning
    ``trainer.config.learning_rate`` afterwards changes nothing for :meth:`step` or
    ``train(anneal_lr=False)``. Only ``train(anneal_lr=True)`` reads it again, at every step,
    and sets the optimizer back to it when it returns. To change the rate of an existing
    trainer, set the optimizer's (``ppo_edu.rlhf.trainer.set_learning_rate(trainer.optimizer,
    lr)``) as well as the config's.
    """

    def __init__(self, policy: PolicyWithValueHead, reference, tokenizer, reward_fn: RewardFn,
                 prompts: Sequence[str], config: RLHFConfig | None = None,
                 judge_fn: RewardFn | None = None, kl_fn=kl_penalty, gae_fn=token_gae,
                 value_loss_fn=clipped_value_loss, potential_fn: PotentialFn | None = None):
        if config is None:
            config = RLHFConfig()
        if not isinstance(config, RLHFConfig):  # a dict failed later with "no attribute 'kl_estimator'"
            raise TypeError(f"config must be an RLHFConfig (e.g. RLHFConfig(**settings)) or None, got "
                            f"{type(config).__name__}")
        self.config = config
        for name, fn, optional in (("reward_fn", reward_fn, False), ("judge_fn", judge_fn, True),
                                   ("kl_fn", kl_fn, False), ("gae_fn", gae_fn, False),
                                   ("value_loss_fn", value_loss_fn, False),
                                   ("potential_fn", potential_fn, True)):
            _require_callable(name, fn, optional)
        if not isinstance(policy, PolicyWithValueHead):
            raise TypeError("policy must be a ppo_edu.rlhf.PolicyWithValueHead (an LM with a value head)")
        require_reference_on(reference, policy.device)
        if any(p.requires_grad for p in reference.parameters()):
            raise ValueError("the reference model must be frozen: use ppo_edu.rlhf.frozen_reference")
        if any(module.training for module in reference.modules()):
            raise ValueError("the reference model is in training mode: its dropout would make its log-probs "
                             "noisy and the KL non-zero even at the policy's own weights. Use "
                             "ppo_edu.rlhf.frozen_reference, or call .eval() on it")
        half = sorted({str(p.dtype).removeprefix("torch.") for p in policy.parameters()
                       if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16)})
        if half:  # measured on the tiny model at the Colab lr: bf16 moved 2.9% of the weights, fp32 98%
            raise ValueError(
                f"the policy's trainable parameters are {', '.join(half)}: Adam here keeps no float32 "
                "master copy, so in bfloat16 most of its small steps round away (nothing learns) and "
                "in float16 its second moments underflow (huge first steps). Load the policy in "
                "float32, load_lm's default (lesson 6, section 9: the memory table)")
        self.pad_id = require_pad_token(tokenizer)
        self.eos_id = tokenizer.eos_token_id
        require_one_vocabulary(policy.lm, reference, tokenizer)
        if config.kl_estimator == "k3":
            warnings.warn(
                "kl_estimator='k3' puts k3 in each token's reward. k3 estimates the KL's value without "
                "bias, but as a reward its expected pull on a token is grad KL(pi || pi_ref) - grad "
                "KL(pi_ref || pi), which nearly vanishes near the reference: at the same beta the KL "
                "runs much further (lesson 6, section 4; ppo_edu.rlhf.kl.expected_kl_gradients). "
                "Penalise with 'k1'.", UserWarning, stacklevel=2)
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.reward_fn, self.judge_fn = reward_fn, judge_fn
        self.kl_fn, self.gae_fn, self.value_loss_fn = kl_fn, gae_fn, value_loss_fn
        self.potential_fn = potential_fn
        self.device = policy.device
        self.context_length = context_length_of(policy.lm)
        self.prompts = list(prompts) if not isinstance(prompts, str) else prompts
        encode_prompts(tokenizer, self.prompts, self.context_length, config.max_new_tokens,
                       add_bos=config.add_bos)  # fail early, before any training
        self.policy.eval()  # dropout is off anyway; eval() also keeps it off in wrapped modules
        self.optimizer = adam(policy.parameters(), config.learning_rate)
        self.kl_ctl = (AdaptiveKLController(config.init_kl_coef, config.target_kl, config.kl_horizon)
                       if config.adaptive_kl else FixedKLController(config.init_kl_coef))
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self._order, self._cursor = self.rng.permutation(len(self.prompts)), 0
        self.history: list[dict] = []
        self.elapsed = 0.0

    # -- 1-3: rollout ---------------------------------------------------------------------

    def next_prompts(self) -> list[str]:
        chosen = []
        while len(chosen) < self.config.batch_size:
            if self._cursor == len(self._order):
                self._order, self._cursor = self.rng.permutation(len(self.prompts)), 0
            chosen.append(self.prompts[self._order[self._cursor]])
            self._cursor += 1
        return chosen

    def decode(self, prompts: Sequence[str], generation: Generation) -> list[str]:
        if len(prompts) != generation.response_ids.shape[0]:  # zip would drop the extra responses
            raise ValueError(f"{len(prompts)} prompts for {generation.response_ids.shape[0]} responses")
        responses = self.tokenizer.batch_decode(generation.response_ids, skip_special_tokens=True)
        return [p + r for p, r in zip(prompts, responses)]

    @torch.no_grad()
    def rollout(self, prompts: Sequence[str]) -> RolloutBatch:
        cfg = self.config
        require_text_list("prompts", prompts)  # list("The movie") would be nine one-character prompts
        query_ids, query_mask = encode_prompts(self.tokenizer, list(prompts), self.context_length,
                                               cfg.max_new_tokens, self.device, cfg.add_bos)
        gen = generate(self.policy.lm, query_ids, query_mask, cfg.max_new_tokens, self.eos_id,
                       self.pad_id, cfg.temperature, self.generator)
        texts = self.decode(prompts, gen)
        scores = check_scores(self.reward_fn(texts), len(texts), texts).to(self.device)
        if cfg.missing_eos_penalty:
            has_eos = (gen.response_ids == self.eos_id).any(1) & gen.response_mask.bool().any(1)
            scores = scores - cfg.missing_eos_penalty * (~has_eos).float()

        ids, am, P, mask = gen.input_ids, gen.attention_mask, gen.query_length, gen.response_mask
        chunks = [slice(i, i + cfg.mini_batch_size) for i in range(0, len(texts), cfg.mini_batch_size)]
        logprobs, values, entropy, ref_logprobs = [], [], [], []
        for c in chunks:
            lp, v, logits = self.policy.logprobs_and_values(ids[c], am[c], P, cfg.temperature)
            logprobs.append(lp), values.append(v), entropy.append(entropy_from_logits(logits))
            ref_logprobs.append(response_logprobs(self.reference, ids[c], am[c], P, cfg.temperature))
        logprobs, values = torch.cat(logprobs), torch.cat(values)
        entropy, ref_logprobs = torch.cat(entropy), torch.cat(ref_logprobs)
        m = mask.float()
        self._require_finite(m, logprobs=logprobs, ref_logprobs=ref_logprobs, values=values)

        kl = _require_per_token("kl_fn", self.kl_fn(logprobs, ref_logprobs, mask, cfg.kl_estimator),
                                tuple(mask.shape), "the per-token KL")
        rewards = token_rewards(scores, kl, self.kl_ctl.value, mask)
        if self.potential_fn is not None:
            potentials = check_potentials(self.potential_fn(list(prompts), gen),
                                          tuple(rewards.shape)).to(rewards.device)
            rewards = shape_rewards(rewards, potentials, mask, cfg.gamma)
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = check_gae_output(self.gae_fn(rewards, values * m, mask, cfg.gamma, cfg.lam),
                                               tuple(mask.shape))
        advantages = whiten(advantages, mask)
        self._require_finite(m, advantages=advantages, returns=returns)
        return RolloutBatch(gen, texts, scores, logprobs, ref_logprobs, values * m, kl * m, rewards,
                            advantages, returns, entropy * m)

    @staticmethod
    def _require_finite(mask, **tensors) -> None:
        for name, t in tensors.items():
            bad = ~torch.isfinite(t) & mask.bool()
            if bad.any():
                row, col = (int(i) for i in bad.nonzero()[0])
                raise FloatingPointError(
                    f"{name} is NaN/inf at response {row}, token {col}: the model has diverged "
                    "(lower the learning rate, check the reward scale); refusing to train on it"
                )

    # -- 4: PPO epochs ----------------------------------------------------------------------

    def ppo_update(self, batch: RolloutBatch) -> dict:
        """``ppo_epochs`` passes over the batch in shuffled minibatches, one Adam step each, on the
        loss -L^CLIP + vf_coef * (clipped value loss): PPO paper eq. 9 without its entropy term.
        Returns the diagnostics averaged over the steps (each measured before its step)."""
        cfg = self.config
        gen = batch.generation
        ids, am, P = gen.input_ids, gen.attention_mask, gen.query_length
        lengths = gen.response_lengths
        log: dict[str, list[float]] = {k: [] for k in (
            "policy_loss", "value_loss", "clip_fraction", "value_clip_fraction", "approx_kl")}
        B = ids.shape[0]
        for _epoch in range(cfg.ppo_epochs):
            order = torch.as_tensor(self.rng.permutation(B), device=ids.device)
            for start in range(0, B, cfg.mini_batch_size):
                mb = order[start:start + cfg.mini_batch_size]
                R = int(lengths[mb].max())  # drop columns that are padding in the whole minibatch
                mask = gen.response_mask[mb, :R]
                logprobs, values, _ = self.policy.logprobs_and_values(
                    ids[mb, :P + R], am[mb, :P + R], P, cfg.temperature)
                weights = (None if cfg.loss_aggregation == "token-mean"  # None: the mask's mean
                           else token_weights(mask, cfg.loss_aggregation, cfg.max_new_tokens).to(logprobs))
                surrogate = clipped_surrogate(logprobs, batch.logprobs[mb, :R], batch.advantages[mb, :R],
                                              cfg.epsilon, mask=mask, weights=weights)
                # a learner's value loss may return the loss alone, without the clip fraction;
                # checked before the backward pass and the step, not at the logging after them
                value_loss, value_clip_fraction = check_value_loss_output(self.value_loss_fn(
                    values, batch.values[mb, :R], batch.returns[mb, :R], mask, cfg.value_clip))
                loss = -surrogate.objective + cfg.vf_coef * value_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"PPO loss is {loss.item()} (policy objective {surrogate.objective.item()}, "
                        f"value loss {value_loss.item()}) at epoch {_epoch}; refusing to step")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    raise FloatingPointError(f"gradient norm is {grad_norm.item()} at epoch {_epoch}; "
                                             "refusing to step")
                self.optimizer.step()
                with torch.no_grad():
                    log["policy_loss"].append(-surrogate.objective.item())
                    log["value_loss"].append(value_loss.item())
                    log["clip_fraction"].append(surrogate.clip_fraction.item())
                    log["value_clip_fraction"].append(float(value_clip_fraction))
                    log["approx_kl"].append(approx_kl(logprobs.detach(), batch.logprobs[mb, :R], mask).item())
        return {k: float(np.mean(v)) for k, v in log.items()}

    # -- one step, and many ---------------------------------------------------------------

    def step(self) -> dict:
        """Rollout, PPO update, KL-controller update; returns (and records) the step's stats."""
        start = time.perf_counter()
        prompts = self.next_prompts()
        batch = self.rollout(prompts)
        judge, judge_s = None, 0.0
        if self.judge_fn is not None:  # before the update: a bad judge must not leave a step unrecorded
            judge_start = time.perf_counter()
            judge = check_scores(self.judge_fn(batch.texts), len(batch.texts), batch.texts,
                                 "judge_fn").mean().item()
            judge_s = time.perf_counter() - judge_start  # measured, not trained on: not in samples/s
        update_stats = self.ppo_update(batch)
        kl_per_sample = sequence_kl(batch.kl, batch.mask)
        mean_kl = kl_per_sample.mean().item()
        if self.config.kl_estimator == "k1":
            warn_if_negative(mean_kl)
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(mean_kl, self.config.batch_size)
        seconds = time.perf_counter() - start - judge_s
        self.elapsed += seconds
        m = batch.mask
        returns, values = batch.returns[m.bool()], batch.values[m.bool()]
        var = returns.var()
        stats = {
            "step": len(self.history) + 1,
            "score": batch.scores.mean().item(),
            "score_std": batch.scores.std().item() if len(batch.scores) > 1 else 0.0,
            "kl": mean_kl,  # the penalised KL, per sample
            "kl_coef": kl_coef,
            "reward": (batch.scores - kl_coef * kl_per_sample).mean().item(),
            "entropy": masked_mean(batch.entropy, m).item(),
            "response_length": batch.generation.response_lengths.float().mean().item(),
            **update_stats,
            "explained_variance": (1 - (returns - values).var() / var).item() if var > 0 else float("nan"),
            "samples_per_s": self.config.batch_size / seconds,
            "learning_rate": self.optimizer.param_groups[0]["lr"],  # the rate this step's update ran at
            "time_s": self.elapsed,
        }
        if judge is not None:
            stats["judge"] = judge
        self.history.append(stats)
        return stats

    def train(self, steps: int | None = None, time_budget_s: float | None = None,
              progress: bool = True, anneal_lr: bool = False) -> list[dict]:
        """Run ``steps`` PPO steps, or as many as fit in ``time_budget_s`` seconds (or both:
        whichever ends first). Returns the whole history (a list of dicts, one per step).

        ``anneal_lr``: the learning rate falls linearly from ``config.learning_rate`` towards 0
        over this call, as lesson 4's PPO anneals it. Step i of ``steps`` runs at the rate times
        1 - i / steps; under a time budget, times 1 - seconds so far / ``time_budget_s`` (with
        both, the lower). The first step runs at the full rate, and the rate is set back to
        ``config.learning_rate`` when the call returns. Each step's rate is in its stats
        (``learning_rate``). ``config.learning_rate`` is read at every step here, so a value
        assigned to it since the trainer was built takes effect; without ``anneal_lr`` the
        optimizer keeps the rate it has (the config's when the trainer was built, unless set on
        the optimizer since) and a later assignment to the config is not read."""
        require_bool("anneal_lr", anneal_lr)
        if steps is None and time_budget_s is None:
            raise ValueError("give steps, time_budget_s, or both")
        if steps is not None:
            steps = require_count("steps", steps)
        if time_budget_s is not None and (isinstance(time_budget_s, bool) or not isinstance(
                time_budget_s, numbers.Real) or not 0 < time_budget_s < math.inf):
            raise ValueError(f"time_budget_s must be a finite number of seconds > 0 or None (for no "
                             f"limit, give steps alone), got {time_budget_s!r}")
        total = steps if steps is not None else None
        bar = tqdm(total=total, disable=not progress, desc="PPO")
        start, done = time.perf_counter(), 0
        try:
            while (steps is None or done < steps) and (
                    time_budget_s is None or time.perf_counter() - start < time_budget_s):
                if anneal_lr:
                    left = [1 - done / steps] if steps is not None else []
                    if time_budget_s is not None:
                        left.append(1 - (time.perf_counter() - start) / time_budget_s)
                    set_learning_rate(self.optimizer, self.config.learning_rate * max(0.0, min(left)))
                stats = self.step()
                done += 1
                bar.update(1)
                bar.set_postfix(score=f"{stats['score']:.2f}", kl=f"{stats['kl']:.2f}")
        finally:
            if anneal_lr:
                set_learning_rate(self.optimizer, self.config.learning_rate)
            bar.close()
        return self.history

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
