"""A back-of-the-envelope estimate of the memory one PPO step needs (fp32, Adam).

Used in lesson 6 to check that the Colab settings fit a 16 GB T4, and checked against a
measured run of the full-size GPT-2 architecture in ``benchmarks/fullsize_gpt2.py``.
Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"): s b h (34 + 5 a s / h) bytes per layer in 16-bit, doubled for fp32
(an overestimate: their count includes 1-byte dropout masks, and dropout is off here).
"""

from __future__ import annotations

from ppo_edu._checks import require_count

GiB = 1024 ** 3


def gpt2_parameter_count(n_layer: int, n_embd: int, vocab_size: int, n_positions: int) -> int:
    """Parameters of a GPT-2 with tied input/output embeddings (124,439,808 for ``gpt2``)."""
    per_layer = 12 * n_embd * n_embd + 13 * n_embd
    return vocab_size * n_embd + n_positions * n_embd + n_layer * per_layer + 2 * n_embd


def estimate_ppo_memory(n_layer: int = 12, n_embd: int = 768, n_head: int = 12,
                        vocab_size: int = 50257, n_positions: int = 1024, batch_size: int = 64,
                        mini_batch_size: int = 16, query_length: int = 16, response_length: int = 32,
                        reward_model_params: int = 0) -> list[tuple[str, float]]:
    """Rows ``(what, GiB)`` for one PPO step of a GPT-2-shaped policy, and their total.

    The rollout (generation, reference and reward forward passes) runs without gradients
    and is much smaller than the update, which keeps the activations of one minibatch.
    Everything is fp32, as lesson 6 trains. (Mixed precision would not simply halve it: it
    keeps fp32 master weights and Adam moments, so this does not offer a 2-byte option.)
    """
    for name, value in (("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head),
                        ("vocab_size", vocab_size), ("n_positions", n_positions),
                        ("batch_size", batch_size), ("mini_batch_size", mini_batch_size),
                        ("query_length", query_length), ("response_length", response_length)):
        require_count(name, value)
    require_count("reward_model_params", reward_model_params, minimum=0)
    if mini_batch_size > batch_size:
        raise ValueError(f"mini_batch_size ({mini_batch_size}) is larger than batch_size ({batch_size})")
    bytes_per_value = 4
    n_params = gpt2_parameter_count(n_layer, n_embd, vocab_size, n_positions)
    s = query_length + response_length
    b = mini_batch_size
    activations = 2 * s * b * n_embd * (34 + 5 * n_head * s / n_embd) * n_layer  # fp32: twice 16-bit
    # logits of the response positions: the logits, their log-softmax, and both gradients
    logits = 4 * b * response_length * vocab_size * bytes_per_value
    kv_cache = 2 * n_layer * batch_size * s * n_embd * bytes_per_value
    rows = [
        ("policy weights (+ value head)", n_params * bytes_per_value),
        ("gradients", n_params * bytes_per_value),
        ("Adam moments (2 per weight)", 2 * n_params * bytes_per_value),
        ("reference model weights", n_params * bytes_per_value),
        ("reward model weights", reward_model_params * bytes_per_value),
        (f"activations, one minibatch of {b} x {s} tokens", activations),
        (f"logits of the minibatch ({b} x {response_length} x {vocab_size})", logits),
        (f"KV cache while sampling {batch_size} responses", kv_cache),
    ]
    rows = [(what, size / GiB) for what, size in rows]
    rows.append(("total", sum(size for _, size in rows)))
    return rows


def format_table(rows: list[tuple[str, float]]) -> str:
    width = max(len(what) for what, _ in rows)
    return "\n".join(f"{what:<{width}}  {size:7.2f} GiB" for what, size in rows)
