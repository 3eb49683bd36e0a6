"""Best-of-n on the offline setup: the reward (and judge) a KL budget buys with no training.

    python benchmarks/best_of_n.py                  # 1024 samples per prompt, ~30 min on 1 core
    python benchmarks/best_of_n.py --samples 64     # ~2 min

Samples ``--samples`` responses for each of ``benchmarks/rlhf.py``'s evaluation prompts
(same seed, same prompts, same length limit) from the shipped tiny SFT model, scores them
with the shipped reward model and with VADER, and prints best-of-n for n = 1, 2, 4, ...:
the upper bound on its KL to the reference, log n - (n - 1)/n nats, its reward-model gain in
standard deviations of the reference samples' scores, its VADER gain, and the gain per
sqrt(nat) that ``benchmarks/rlhf.py`` prints for the trainers. Each n is estimated from all
the samples at once (``ppo_edu.rlhf.best_of_n``). Best-of-n is a yardstick, not a rival: it
costs n samples per response at inference time. A trained policy that sits below its
curve spends more KL than needed for the reward it gets.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from rlhf import check_setup_args, load_setup  # benchmarks/rlhf.py, beside this script

from ppo_edu.rlhf.best_of_n import best_of_n_curve, best_of_n_kl, sample_and_score


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024, help="responses per prompt (largest n)")
    parser.add_argument("--eval-prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts, as in benchmarks/rlhf.py")
    parser.add_argument("--sampling-seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lm", default="tiny")
    parser.add_argument("--rm", default="tiny")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    check_setup_args(parser, args)
    torch.set_num_threads(args.threads)
    lm, tokenizer, _, reward_fn, judge_fn, _, eval_prompts = load_setup(args)
    print(f"policy {args.lm}, reward model {args.rm}, {len(eval_prompts)} evaluation prompts (seed "
          f"{args.seed}), {args.samples} samples each, {args.max_new_tokens} new tokens", flush=True)
    t0 = time.perf_counter()
    scores, judge = sample_and_score(lm, tokenizer, eval_prompts, reward_fn, judge_fn,
                                     num_samples=args.samples, max_new_tokens=args.max_new_tokens,
                                     seed=args.sampling_seed, progress=True)
    seconds = time.perf_counter() - t0
    std = float(scores.std())
    rho = float(np.corrcoef(scores.ravel(), judge.ravel())[0, 1])
    print(f"{scores.size} samples in {seconds:.0f} s. Reference samples: score {scores.mean():.3f} "
          f"(std {std:.3f}), VADER {judge.mean():.3f} (std {judge.std():.3f}); correlation "
          f"score-VADER {rho:.3f}")
    # powers of two, and --samples itself when it is not one (the largest n the help promises)
    ns = sorted({2 ** k for k in range(args.samples.bit_length()) if 2 ** k <= args.samples} | {args.samples})
    rows = best_of_n_curve(scores, judge, ns)
    base = rows[0]
    print(f"\n{'n':>6}{'KL bound':>10}{'RM gain (std)':>15}{'VADER gain':>12}{'gain/sqrt(KL)':>15}"
          f"{'VADER per std':>15}")
    for row in rows:
        gain = (row["score"] - base["score"]) / std
        judge_gain = row["judge"] - base["judge"]
        per_sqrt = f"{gain / row['kl_bound'] ** 0.5:.3f}" if row["n"] > 1 else "-"
        per_std = f"{judge_gain / gain:.3f}" if row["n"] > 1 else "-"
        print(f"{row['n']:>6}{row['kl_bound']:>10.2f}{gain:>+15.2f}{judge_gain:>+12.3f}{per_sqrt:>15}"
              f"{per_std:>15}")
    reached = [r for r in rows if (r["score"] - base["score"]) / std >= 1 and r["judge"] - base["judge"] >= 0.3
               and r["kl_bound"] <= 6]
    if reached:
        r = reached[0]
        print(f"\nlesson 6's offline targets (RM gain >= 1 std, VADER gain >= 0.3, KL <= 6 nats) are first "
              f"met at n = {r['n']}: KL <= {best_of_n_kl(r['n']):.2f} nats")
    else:
        print("\nlesson 6's offline targets (RM gain >= 1 std, VADER gain >= 0.3, KL <= 6 nats) are met "
              f"by no n up to {args.samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
