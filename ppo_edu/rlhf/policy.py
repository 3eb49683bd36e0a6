"""The policy pi_theta with a scalar value head V, and the frozen reference pi_ref.

The value head is one linear layer on the LM's last hidden state, sharing the
transformer trunk with the policy (as in Ziegler et al. 2019 and TRL's old
``AutoModelForCausalLMWithValueHead``): one forward pass gives both log pi_theta and V,
which is cheaper than a second model. V(s_t) is read at the position *before* response
token t, the same position whose logits give pi_theta(y_t | s_t) (see ``logprobs``).

Dropout is switched off for good: with dropout the log-probs recomputed in the update
differ from those at sampling time even before any update (r_t != 1 at the start, and
a KL to an identical reference that is not 0). TRL does the same.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ppo_edu.rlhf.logprobs import lm_forward, logprobs_from_logits, require_temperature

VALUE_HEAD_FILE = "value_head.safetensors"


def disable_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


class PolicyWithValueHead(nn.Module):
    """An ``AutoModelForCausalLM`` (``self.lm``) plus ``self.value_head``: hidden -> V(s)."""

    def __init__(self, lm: nn.Module):
        if isinstance(lm, PolicyWithValueHead):  # was "'PolicyWithValueHead' object has no attribute 'config'"
            raise TypeError("lm is already a PolicyWithValueHead: use it as it is, or wrap its .lm")
        get_head = getattr(lm, "get_output_embeddings", None)
        if get_head is None or get_head() is None:  # a reward model (no LM head) failed only in the first step
            raise TypeError(f"PolicyWithValueHead needs a causal language model with an LM head "
                            f"(AutoModelForCausalLM, e.g. from ppo_edu.lm.load_lm), got {type(lm).__name__}")
        super().__init__()
        self.lm = disable_dropout(lm)
        hidden = lm.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # V = 0 at the start: a random value head would drown the first advantages in noise
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        param = next(lm.parameters())
        self.value_head.to(device=param.device, dtype=param.dtype)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, device: torch.device | str = "cpu",
                        **kwargs) -> PolicyWithValueHead:
        """Load the LM with ``AutoModelForCausalLM.from_pretrained`` (a hub name or a local
        directory: the same call, safetensors only, no remote code); a
        ``value_head.safetensors`` saved next to it is loaded too."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from ppo_edu._checks import require_device
        from ppo_edu.lm.models import _from_pretrained

        device = require_device(device)
        lm = _from_pretrained(AutoModelForCausalLM, str(name_or_dir), "language model", **kwargs)
        policy = cls(lm)
        head = Path(name_or_dir) / VALUE_HEAD_FILE
        if head.is_file():
            policy.value_head.load_state_dict(load_file(str(head)))
        return policy.to(device)

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        self.lm.save_pretrained(directory)
        state = {k: v.detach().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, str(Path(directory) / VALUE_HEAD_FILE))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_length: int,
                temperature: float = 1.0):
        """logits ``(B, R, V)`` (already divided by ``temperature``) and values ``(B, R)``
        for the R response positions of ``query (P) + response (R)`` sequences."""
        temperature = require_temperature(temperature)
        logits, hidden = lm_forward(self.lm, input_ids, attention_mask, query_length,
                                    output_hidden_states=True)
        values = self.value_head(hidden).squeeze(-1).float()
        return logits.float() / temperature, values

    def logprobs_and_values(self, input_ids, attention_mask, query_length, temperature=1.0):
        """(log pi_theta(y_t|s_t), V(s_t), logits) for every response token: (B, R), (B, R) and
        (B, R, V)."""
        logits, values = self(input_ids, attention_mask, query_length, temperature)
        return logprobs_from_logits(logits, input_ids[:, query_length:]), values, logits


def frozen_reference(model: nn.Module) -> nn.Module:
    """A frozen copy of the LM to serve as pi_ref: no gradients, dropout off, eval mode."""
    lm = model.lm if isinstance(model, PolicyWithValueHead) else model
    ref = disable_dropout(copy.deepcopy(lm)).eval()
    return ref.requires_grad_(False)
