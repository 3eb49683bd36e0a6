"""Best-of-n distilled into the policy: can a *trained* tiny GPT-2 reach best-of-n's curve?

    python benchmarks/distill_best_of_n.py                       # best-of-32, 6 epochs, ~4 min
    python benchmarks/distill_best_of_n.py --validation-prompts  # + validation openings, ~8 min

``benchmarks/best_of_n.py`` shows that best-of-n *sampling* buys about 1.1 std of
reward-model gain per sqrt(nat) of KL, against 0.7-0.8 for five minutes of PPO. Best-of-n
picks per prompt, at inference time. This script asks whether a policy can learn to do the
same: for each of ``benchmarks/rlhf.py``'s training prompts (same seed, same split, same
length limit) it samples ``--n`` responses from the shipped tiny SFT model, keeps the one
the reward model scores highest, and fine-tunes a copy of the SFT model on those (prompt,
best response) pairs: cross-entropy on the response tokens only (and its EOS), Adam, no
dropout, ``--epochs`` passes. This is rejection-sampling fine-tuning (best-of-n
distillation, "expert iteration" with one round). After every epoch the policy is measured
as the trainers are: on the held-out evaluation prompts, reward-model gain in reference
std, VADER gain, exact KL to the reference, gain per sqrt(nat), VADER gain per std.

If the distilled policy sat on best-of-n's curve, PPO's shortfall would be the trainer's.
If it lands near PPO's curve, the shortfall is what a policy of this size, trained on this
many prompts, can represent and carry over to prompts it has not seen.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import torch
from rlhf import check_setup_args, load_setup, measure  # benchmarks/rlhf.py, beside this script

from ppo_edu.rlhf import frozen_reference
from ppo_edu.rlhf.best_of_n import best_of_n_kl
from ppo_edu.rlhf.generation import context_length_of, encode_prompts, generate, require_pad_token
from ppo_edu.rlhf.logprobs import lm_forward, logprobs_from_logits
from ppo_edu.rlhf.setups import load_prompts
from ppo_edu.rlhf.trainer import check_scores


@torch.no_grad()
def best_responses(lm, tokenizer, prompts, reward_fn, n: int, max_new_tokens: int, seed: int,
                   batch_size: int = 256) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
    """For each prompt, the highest-scoring of ``n`` sampled responses: ``(query ids, response
    ids up to and including EOS)`` pairs, and the mean score of the first sample and of the
    chosen one (shape (2,))."""
    pad_id = require_pad_token(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    pairs, first, chosen = [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        q, qm = encode_prompts(tokenizer, chunk, context_length_of(lm), max_new_tokens, "cpu", True)
        best = np.full(len(chunk), -np.inf, dtype=np.float32)
        picked: list[list[int]] = [[] for _ in chunk]
        for i in range(n):
            gen = generate(lm, q, qm, max_new_tokens, tokenizer.eos_token_id, pad_id, 1.0, generator)
            decoded = tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True)
            texts = [p + r for p, r in zip(chunk, decoded)]
            scores = check_scores(reward_fn(texts), len(texts), texts).numpy()
            if i == 0:
                first.append(scores)
            for j in np.flatnonzero(scores > best):
                best[j] = scores[j]
                picked[j] = gen.response_ids[j, :int(gen.response_mask[j].sum())].tolist()
        chosen.append(best)
        pairs += [(q[j][qm[j].bool()].tolist(), picked[j]) for j in range(len(chunk))]
    return pairs, np.array([np.concatenate(first).mean(), np.concatenate(chosen).mean()])


def response_nll(policy, pairs, pad_id: int) -> torch.Tensor:
    """Mean negative log-likelihood of the responses given their queries (left-padded batch)."""
    P, R = max(len(q) for q, _ in pairs), max(len(r) for _, r in pairs)
    ids = torch.full((len(pairs), P + R), pad_id)
    attention = torch.zeros_like(ids)
    mask = torch.zeros(len(pairs), R)
    for k, (q, r) in enumerate(pairs):
        ids[k, P - len(q):P + len(r)] = torch.tensor(q + r)
        attention[k, P - len(q):P + len(r)] = 1
        mask[k, :len(r)] = 1
    logits, _ = lm_forward(policy, ids, attention, P)
    return -(logprobs_from_logits(logits, ids[:, P:]) * mask).sum() / mask.sum()


def distill(policy, pairs, pad_id: int, epochs: int, lr: float, batch_size: int, seed: int, after_epoch):
    """``epochs`` passes of Adam on the response cross-entropy; ``after_epoch(epoch, mean loss)``."""
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr, eps=1e-5)
    rng = np.random.default_rng(seed)
    policy.eval()  # no dropout: the KL is measured without it too
    for epoch in range(1, epochs + 1):
        losses = []
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), batch_size):
            loss = response_nll(policy, [pairs[i] for i in order[start:start + batch_size]], pad_id)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"distillation loss is {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        after_epoch(epoch, float(np.mean(losses)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="responses sampled per training prompt")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--validation-prompts", action="store_true",
                        help="also distil on the validation split's openings (no model trained on them)")
    parser.add_argument("--train-prompts", type=int, default=None, help="use only the first N training prompts")
    parser.add_argument("--eval-prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts, as in benchmarks/rlhf.py")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lm", default="tiny")
    parser.add_argument("--rm", default="tiny")
    args = parser.parse_args(argv)
    for name in ("n", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        parser.error("--lr must be > 0")
    check_setup_args(parser, args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lm, tokenizer, _, reward_fn, judge_fn, train_prompts, eval_prompts = load_setup(args)
    if args.validation_prompts:
        train_prompts = train_prompts + load_prompts("snippets", "validation", seed=args.seed)
    train_prompts = train_prompts[:args.train_prompts]
    print(f"policy {args.lm}, reward model {args.rm}, {len(train_prompts)} training prompts, "
          f"{len(eval_prompts)} evaluation prompts (seed {args.seed}), best of {args.n} "
          f"(KL <= {best_of_n_kl(args.n):.2f} nats on its own), {args.epochs} epochs at lr {args.lr}",
          flush=True)
    reference = frozen_reference(lm)
    base = measure(lm, reference, tokenizer, eval_prompts, reward_fn, judge_fn, args)
    std = base["score_std"]
    start = time.perf_counter()
    pairs, (first, chosen) = best_responses(lm, tokenizer, train_prompts, reward_fn, args.n,
                                            args.max_new_tokens, args.seed)
    print(f"sampled {args.n * len(train_prompts)} responses in {time.perf_counter() - start:.0f} s; on the "
          f"training prompts the chosen ones score {(chosen - first) / std:+.2f} reference std above a "
          f"single sample")
    print(f"\n{'epoch':>6}{'loss':>8}{'RM gain (std)':>15}{'VADER gain':>12}{'KL (nats)':>11}"
          f"{'gain/sqrt(KL)':>15}{'VADER per std':>15}")
    policy = copy.deepcopy(lm)

    def after_epoch(epoch: int, loss: float) -> None:
        row = measure(policy, reference, tokenizer, eval_prompts, reward_fn, judge_fn, args)
        gain, judge_gain = (row["score"] - base["score"]) / std, row["judge"] - base["judge"]
        per_sqrt = f"{gain / row['kl'] ** 0.5:.3f}" if row["kl"] > 0 else "-"
        per_std = f"{judge_gain / gain:.3f}" if gain > 0 else "-"
        print(f"{epoch:>6}{loss:>8.3f}{gain:>+15.3f}{judge_gain:>+12.3f}{row['kl']:>11.2f}{per_sqrt:>15}"
              f"{per_std:>15}", flush=True)

    distill(policy, pairs, tokenizer.pad_token_id, args.epochs, args.lr, args.batch_size, args.seed,
            after_epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
