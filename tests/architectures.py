"""The architecture matrix: tiny random models built from the configs of the families people
train (Llama 3.x, Qwen2.5, Qwen3, Mistral, Gemma 2, Gemma 3, Phi-3, GPT-NeoX/Pythia), each
with the shape features that make its family itself (grouped-query attention, biases, q/k
norms, sliding windows, soft-capping, fused projections, partial rotary, parallel residual),
and the decode path the engine is expected to take for it.

Each is saved as a model directory (safetensors, the bundled tiny model's tokenizer and chat
template), so the engine loads it the way it loads a user's model.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEAN = "lean steps"  # training.llama_decode's prefill and steps
MODEL_STEPS = "model's forward, own sampler"  # training.decode._model_steps
GENERATE = "generate()"  # logits are more than head(hidden): Hugging Face's generate


@dataclass(frozen=True)
class Architecture:
    id: str
    title: str
    build: Callable[[int], Any]  # vocabulary size -> a transformers config
    path: str  # the decode path a rollout takes


def _common(vocab: int) -> dict[str, Any]:
    return dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


def _llama3(vocab: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**_common(vocab), tie_word_embeddings=False, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})


def _qwen25(vocab: int) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**_common(vocab), tie_word_embeddings=True)  # q/k/v biases


def _qwen3(vocab: int) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(**_common(vocab), head_dim=16, tie_word_embeddings=True)  # q/k norms


def _mistral(vocab: int) -> Any:
    from transformers import MistralConfig

    return MistralConfig(**_common(vocab), sliding_window=4096)  # the window never bites here


def _gemma2(vocab: int) -> Any:
    from transformers import Gemma2Config

    # soft-capped logits and attention, a window of 8 that does bite on these prompts
    return Gemma2Config(**_common(vocab), head_dim=16, query_pre_attn_scalar=16,
                        sliding_window=8, final_logit_softcapping=30.0,
                        attn_logit_softcapping=50.0)


def _gemma3(vocab: int) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**_common(vocab), head_dim=16, query_pre_attn_scalar=16,
                            sliding_window=8,
                            layer_types=["sliding_attention", "full_attention"])


def _phi3(vocab: int) -> Any:
    from transformers import Phi3Config

    return Phi3Config(**_common(vocab))  # fused qkv_proj and gate_up_proj


def _gpt_neox(vocab: int) -> Any:
    from transformers import GPTNeoXConfig

    common = _common(vocab)
    del common["num_key_value_heads"]
    return GPTNeoXConfig(**common, use_parallel_residual=True, tie_word_embeddings=False)


ARCHITECTURES = [
    Architecture("llama3", "Llama 3.x (llama3 rope scaling, untied head)", _llama3, LEAN),
    Architecture("qwen2.5", "Qwen2.5 (q/k/v biases, tied head)", _qwen25, LEAN),
    Architecture("qwen3", "Qwen3 (per-head q/k norms)", _qwen3, LEAN),
    Architecture("mistral", "Mistral (sliding window longer than the rollout)", _mistral, LEAN),
    Architecture("gemma2", "Gemma 2 (soft-capping, sliding window)", _gemma2, GENERATE),
    Architecture("gemma3", "Gemma 3 text (sliding and global layers, q/k norms)", _gemma3,
                 MODEL_STEPS),
    Architecture("phi3", "Phi-3 (fused projections)", _phi3, MODEL_STEPS),
    Architecture("gpt-neox", "GPT-NeoX / Pythia (LayerNorm, partial rotary, parallel residual)",
                 _gpt_neox, MODEL_STEPS),
]
BY_ID = {a.id: a for a in ARCHITECTURES}


@functools.cache
def _tokenizer() -> Any:
    from tests.training_helpers import tiny_tokenizer

    return tiny_tokenizer()


def build_model(arch: Architecture, *, seed: int = 0) -> Any:
    """The architecture's causal LM with random weights from ``seed``, fp32, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = _tokenizer()
    config = arch.build(len(tok))
    config.bos_token_id, config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def save_model(arch: Architecture, folder: Path) -> Path:
    """The architecture as a model directory (safetensors and tokenizer), as a user brings one."""
    build_model(arch).save_pretrained(folder, safe_serialization=True)
    _tokenizer().save_pretrained(folder)
    return folder
