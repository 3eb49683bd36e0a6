"""One PPO step of the full-size GPT-2 architecture (124M, random init) on CPU.

    python benchmarks/fullsize_gpt2.py                 # batch 8 in minibatches of 4, 2 epochs
    python benchmarks/fullsize_gpt2.py --batch-size 16 --max-new-tokens 32
    python benchmarks/fullsize_gpt2.py --batch-size 64 --mini-batch-size 16 --ppo-epochs 4 \
        --prompt-words 11 --max-new-tokens 32          # the step shapes of lesson 6's Colab run

Nothing is downloaded: the weights are random (``GPT2Config()`` defaults: 12 layers, 768
wide, 12 heads, 1024 positions) and the tokenizer is a word-level stand-in with GPT-2's
50,257 ids plus the ``<|pad|>`` row that ``ppo_edu.lm.load_lm("gpt2")`` adds. What matches
lesson 6's Colab run is the policy: its architecture and vocabulary, so its parameter count
and the size of its weights, gradients, Adam state and logits per token. The rest does not,
unless told:

- The step is smaller by default: 8 prompts of 8 words (one token each, plus the BOS) in
  minibatches of 4, 2 PPO epochs and at most 16 new tokens. The Colab run (lesson 6's
  ``COLAB_SETTINGS`` over its ``full`` profile) has batch 64 in minibatches of 16, 4 epochs
  and 32 new tokens, and lesson 6's memory table assumes queries of 12 tokens; the third command
  above gives one step those shapes. A random policy almost never samples the EOS, so its
  responses run to the limit (the mean length is printed).
- There is no reward model: the reward is a function of the text's length. The Colab run's
  reward model (DistilBERT, 67M parameters, which lesson 6's memory table counts) and its
  forward pass are in neither the measured memory nor the time, nor in the estimate printed.
- The time is that of one step on this machine's CPU, with no warm-up step before it (the
  first call's costs are in it), not that of a step on Colab's GPU; the memory is the
  process's peak RSS, not GPU memory.

It prints the step's time, the process's peak memory (peak RSS minus the RSS before the
models were built; where there is no ``/proc``, as on macOS, the rise of ``ru_maxrss``, which
a fresh process reports correctly) and ``ppo_edu.rlhf.memory``'s estimate for the same settings, with no
reward model, so that the estimate lesson 6 uses to size the Colab run is checked against a
measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import resource  # not on Windows
except ImportError:
    resource = None

import torch

GPT2_VOCAB = 50257  # ids 0..50256, 50256 = <|endoftext|>


def word_tokenizer(vocab_size: int = GPT2_VOCAB):
    """A ``PreTrainedTokenizerFast`` whose ids are GPT-2's: ``w0 ... w50255``, EOS, PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size - 1)}
    vocab["<|endoftext|>"] = vocab_size - 1
    vocab["<|pad|>"] = vocab_size
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|pad|>")


PROC = Path("/proc/self")  # Linux's view of this process; a test points it elsewhere


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's resident set (Linux 4.0 and later),
    so that :func:`peak_rss_gib` reports the peak from here on, not an earlier one in the same
    process (a test suite, a notebook, a second :func:`run`). False where that cannot be done
    (macOS and Windows have no ``/proc``; a sandbox may refuse the write): the peak is then
    ``ru_maxrss``'s, which never comes down."""
    try:
        (PROC / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float | None:
    """The resident set's high-water mark, GiB: VmHWM (since the last :func:`reset_peak_rss`)
    where ``/proc`` has it, else ``ru_maxrss`` (the process's whole life), else None."""
    try:
        for line in (PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 ** 2  # kB
    except OSError:
        pass
    if resource is None:
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 ** (3 if sys.platform == "darwin" else 2)  # bytes on macOS, kB on Linux


def current_rss_gib() -> float | None:
    """The resident set now, GiB, where ``/proc`` has it, else None."""
    try:
        pages = int((PROC / "statm").read_text().split()[1])
    except OSError:
        return None
    return pages * resource.getpagesize() / 1024 ** 3


def step_config(batch_size: int, mini_batch_size: int, ppo_epochs: int, prompt_words: int,
                max_new_tokens: int, n_positions: int = 1024):
    """The run's ``RLHFConfig``; ValueError for settings that cannot work, before any model
    is built (``main`` turns it into a usage error)."""
    from ppo_edu.rlhf import RLHFConfig

    if isinstance(prompt_words, bool) or not isinstance(prompt_words, int) or prompt_words < 1:
        raise ValueError(f"prompt_words must be an integer >= 1, got {prompt_words!r}")
    if isinstance(max_new_tokens, int) and prompt_words + 1 + max_new_tokens > n_positions:
        # one token per word, plus the BOS: refused here, not after the 124M model is built
        raise ValueError(f"prompt_words + 1 (BOS) + max_new_tokens = {prompt_words + 1 + max_new_tokens} "
                         f"> the model's context of {n_positions} positions")
    return RLHFConfig(batch_size=batch_size, mini_batch_size=mini_batch_size, ppo_epochs=ppo_epochs,
                      max_new_tokens=max_new_tokens, learning_rate=1e-5)


def run(batch_size: int = 8, mini_batch_size: int = 4, ppo_epochs: int = 2, prompt_words: int = 8,
        max_new_tokens: int = 16, config_overrides: dict | None = None, verbose: bool = True) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    from ppo_edu.rlhf import PolicyWithValueHead, RLHFTrainer, frozen_reference
    from ppo_edu.rlhf.memory import estimate_ppo_memory, format_table, gpt2_parameter_count

    cfg = step_config(batch_size, mini_batch_size, ppo_epochs, prompt_words, max_new_tokens,
                      (config_overrides or {}).get("n_positions", 1024))  # first
    # the peak above the RSS before the models; without /proc, above the high-water mark so far
    # (in a fresh process, about the same: memory has only grown since it started)
    exact = reset_peak_rss() and current_rss_gib() is not None
    base_rss = current_rss_gib() if exact else peak_rss_gib()
    tokenizer = word_tokenizer()
    overrides = dict(config_overrides or {})
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        **overrides)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    policy = PolicyWithValueHead(GPT2LMHeadModel(config))
    reference = frozen_reference(policy)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in policy.lm.parameters())
    gen = torch.Generator().manual_seed(0)
    prompts = [" ".join(f"w{int(i)}" for i in torch.randint(0, 50000, (prompt_words,), generator=gen))
               for _ in range(batch_size)]

    def reward_fn(texts):  # any function of the text will do: the shapes are what we test
        return torch.tensor([len(t) / 100.0 for t in texts])

    trainer = RLHFTrainer(policy, reference, tokenizer, reward_fn, prompts, cfg)
    t0 = time.perf_counter()
    stats = trainer.step()
    step_s = time.perf_counter() - t0
    peak_now = peak_rss_gib()
    peak = None if peak_now is None or base_rss is None else peak_now - base_rss
    estimate = estimate_ppo_memory(
        n_layer=config.n_layer, n_embd=config.n_embd, n_head=config.n_head, vocab_size=config.vocab_size,
        n_positions=config.n_positions, batch_size=batch_size, mini_batch_size=mini_batch_size,
        query_length=prompt_words + 1, response_length=max_new_tokens)  # + the BOS (add_bos)
    result = {
        "parameters": n_params,
        "parameters_formula": gpt2_parameter_count(config.n_layer, config.n_embd, config.vocab_size,
                                                   config.n_positions),
        "build_s": build_s, "step_s": step_s, "peak_gib": peak, "estimate_gib": estimate[-1][1],
        "response_length": stats["response_length"], "kl": stats["kl"],
        "threads": torch.get_num_threads(),
        "peak_method": "VmHWM" if exact else ("ru_maxrss" if peak is not None else None),
    }
    if verbose:
        print(f"GPT-2 architecture: {n_params:,} parameters (formula {result['parameters_formula']:,}), "
              f"random init in {build_s:.1f} s")
        print(f"one PPO step: {batch_size} prompts x {prompt_words} tokens, up to {max_new_tokens} new "
              f"tokens, {ppo_epochs} epochs of minibatches of {mini_batch_size}, "
              f"{torch.get_num_threads()} torch threads")
        print(f"  time:        {step_s:.1f} s  (mean response length {stats['response_length']:.1f})")
        if peak is None:
            print("  peak memory: not measured (this system has neither /proc nor the resource module)")
        elif exact:
            print(f"  peak memory: {peak:.2f} GiB above the {base_rss:.2f} GiB the process held before")
        else:
            print(f"  peak memory: {peak:.2f} GiB above the process's earlier high-water mark of "
                  f"{base_rss:.2f} GiB (ru_maxrss: no /proc to reset it, so run this in a fresh process)")
        print("  estimate (ppo_edu.rlhf.memory, fp32, same settings):")
        print("    " + format_table(estimate).replace("\n", "\n    "))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mini-batch-size", type=int, default=4)
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:  # 0 was ignored (torch's default ran)
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        step_config(args.batch_size, args.mini_batch_size, args.ppo_epochs, args.prompt_words,
                    args.max_new_tokens)
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.batch_size, args.mini_batch_size, args.ppo_epochs, args.prompt_words, args.max_new_tokens)


if __name__ == "__main__":
    main()
