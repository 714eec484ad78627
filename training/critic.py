"""PPO's critic: a value head on a transformer backbone, one value per completion token.

The backbone is a copy of the policy's base model (``critic_init="policy"``) or the base of a
fitted reward model (``"reward"``, which must share the policy's tokenizer: the critic reads
the policy's token ids). With LoRA the critic's backbone gets adapters of its own and only
those and the head train. Its trainable weights are saved with the training state (safetensors)
for resume, never in the downloadable model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.algorithms.ppo import PPOConfig
from training.checkpoints import STATE_DIR
from training.modelhub import load_tokenizer
from training.reward_scorer import load_value_backbone
from training.reward_types import get_reward_type
from training.runtime import use_gradient_checkpointing

CRITIC_FILE = "critic.safetensors"


class Critic(nn.Module):
    """``Linear(hidden, 1)`` over the backbone's last hidden states, in float32.

    The head starts at zero (as OpenAI's lm-human-preferences), so the first values are 0 and
    the first advantages are the returns themselves."""

    def __init__(self, backbone: Any, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1, device=next(backbone.parameters()).device)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prompt_len: int) -> torch.Tensor:
        """Values (B, T) of the states before each completion token (the alignment of
        :func:`training.rollout.completion_logprobs`: position P - 1 + t predicts token t)."""
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, P + T)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, use_cache=False)
        hidden = out.last_hidden_state[:, prompt_len - 1:-1]  # (B, T, H)
        return self.value_head(hidden.float()).squeeze(-1)  # (B, T)


def backbone_path(config: PPOConfig) -> str:
    """The directory the critic's backbone comes from, per ``config.critic_init``."""
    if config.critic_init == "policy":
        return config.model_path
    source = next((r for r in config.rewards if _backbone_source(r.type)), None)
    if source is None or not source.path:
        raise ValueError("critic_init=reward needs a reward source whose model can be a "
                         "critic's backbone (a reward model)")
    return source.path


def _backbone_source(type_id: str) -> bool:
    kind = get_reward_type(type_id)
    return bool(kind and kind.critic_backbone)


def build_critic(config: PPOConfig, policy_tokenizer: Any, *, dtype: torch.dtype,
                 device: torch.device) -> Critic:
    """A new critic; raises ValueError when a reward-model backbone reads other tokens."""
    path = backbone_path(config)
    if config.critic_init == "reward" and \
            load_tokenizer(path).get_vocab() != policy_tokenizer.get_vocab():
        raise ValueError("critic_init=reward needs a reward model sharing the policy's "
                         f"tokenizer; {path} has another one (use critic_init=policy)")
    backbone: Any = load_value_backbone(path, dtype=dtype, device=device)
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                          target_modules="all-linear", lora_dropout=0.0)
        backbone = get_peft_model(backbone, lora)
    use_gradient_checkpointing(backbone, config.gradient_checkpointing)
    return Critic(backbone, int(backbone.config.hidden_size))


def trainable_state(critic: Critic) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in critic.named_parameters()
            if p.requires_grad}


def save_critic(critic: Critic, checkpoint: Path) -> None:
    """The critic's trainable weights into ``<checkpoint>/training_state/critic.safetensors``."""
    folder = checkpoint / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(critic), str(folder / CRITIC_FILE))


def load_critic(critic: Critic, checkpoint: Path) -> None:
    """Restore what :func:`save_critic` wrote; every saved tensor must find its parameter."""
    tensors = load_file(str(checkpoint / STATE_DIR / CRITIC_FILE))
    result = critic.load_state_dict(tensors, strict=False)
    missing = set(trainable_state(critic)) - set(tensors)
    if result.unexpected_keys or missing:
        raise ValueError(f"{checkpoint} holds another critic: unexpected "
                         f"{result.unexpected_keys[:3]}, missing {sorted(missing)[:3]}")
