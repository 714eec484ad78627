"""A fitted reward model as the engine reads it: loading a directory as a one-output sequence
classifier (or its bare transformer, for PPO's critic), scoring (prompt, response) pairs the
way it was fitted, and :class:`RewardModelScorer`, the reward source runs score with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from training.modelhub import load_tokenizer
from training.reward_data import format_pair
from training.rollout import Prompt
from training.runtime import resolve_device


def load_reward_tokenizer(path: str | Path) -> Any:
    """Right padding (encoders read the first token at position 0; a causal LM's head finds its
    last token either way) and left truncation (the response survives)."""
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"
    return tokenizer


def load_reward_model(path: str | Path, tokenizer: Any, *, dtype: torch.dtype,
                      device: torch.device) -> PreTrainedModel:
    """A one-output sequence classifier from a causal-LM, encoder or reward-model directory;
    a head the directory lacks is newly initialised (from the torch seed)."""
    model: Any = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=dtype, local_files_only=True, use_safetensors=True,
        trust_remote_code=False)
    if model.config.pad_token_id is None:  # a causal LM's head looks for the last non-pad
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device)


def load_value_backbone(path: str | Path, *, dtype: torch.dtype, device: torch.device
                        ) -> PreTrainedModel:
    """The base transformer (``AutoModel``, no head) of a reward-model or causal-LM directory,
    e.g. to start PPO's critic from a fitted reward model."""
    model: Any = AutoModel.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                           use_safetensors=True, trust_remote_code=False)
    return model.to(device)


def _usable_length(model: Any, max_length: int) -> int:
    """``max_length`` capped by the model's position table (512 for MiniLM)."""
    limit = getattr(model.config, "max_position_embeddings", None) or max_length
    return max(2, min(max_length, int(limit)))


def rewards_of(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int
               ) -> torch.Tensor:
    """The model's scalar output for each text, (N,) float32, with gradient if enabled."""
    device = next(model.parameters()).device
    enc = tokenizer(list(texts), padding=True, truncation=True,
                    max_length=_usable_length(model, max_length),
                    return_tensors="pt").to(device)  # (N, T)
    logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return logits[:, 0].float()  # (N,)


@torch.no_grad()
def score_pairs(model: Any, tokenizer: Any, prompts: Sequence[Prompt],
                responses: Sequence[str], max_length: int, batch_size: int) -> torch.Tensor:
    """Rewards of (prompt, response) pairs as the model reads them in training, (N,) on the
    CPU. Texts are batched by length to pad little; the order of the result is the input's."""
    texts = [format_pair(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts))
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start:start + max(1, batch_size)]
        out[idx] = rewards_of(model, tokenizer, [texts[i] for i in idx], max_length).cpu()
    return out


class RewardModelScorer:
    """A fitted reward model as a reward source (:class:`training.scoring.RewardScorer`):
    ``device`` is a torch device or its name (``auto`` picks CUDA when present)."""

    def __init__(self, path: str | Path, *, device: torch.device | str,
                 dtype: torch.dtype = torch.float32, max_length: int = 1024,
                 batch_size: int = 16, args: Mapping[str, Any] | None = None):
        self.tokenizer = load_reward_tokenizer(path)
        self.model = load_reward_model(path, self.tokenizer, dtype=dtype,
                                       device=resolve_device(str(device)))
        self.model.eval().requires_grad_(False)
        self.max_length, self.batch_size = max_length, batch_size

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        scores = score_pairs(self.model, self.tokenizer, prompts, completions,
                             self.max_length, self.batch_size)
        return [float(s) for s in scores]
