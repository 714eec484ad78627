"""A run's peak memory per device, estimated before it starts, from the model's shape (its
``config.json`` and parameter count: :mod:`training.model_files`) and the run's settings.
No torch: the web process answers ``POST /api/runs/estimate`` with it as a person types.

What the engine holds, in the parameters' dtype (fp32: 4 bytes, bf16: 2):
- for the whole run: the weights; AdamW's two moments per trainable parameter (LoRA's adapters
  are float32 whatever the base's dtype); the frozen reference when the KL needs one (with
  LoRA the reference is the base with its adapters off: nothing more); PPO's critic (a copy of
  the backbone with its own moments); every reward model a reward source loads;
- while sampling: the KV cache for prompts x group x (prompt + new tokens), and on the CPU at
  fp32 the lean decoder's laid-out copy of the weights (:mod:`training.llama_decode`);
- while training: the gradients of the trainable parameters and the activations of one
  micro-batch (:mod:`training.memory`, which also picks the micro-batch the engine will);
- on the CPU the process itself (Python, torch, transformers, the tokenizer), as measured;
  on a GPU the CUDA context, which torch does not count, is added when judging a device.
The peak is what the run keeps plus the larger of the sampling and the training phases on a
GPU, plus both on the CPU (measured: there the kept heap holds one phase's pages while the
other allocates).
``bench/estimate_memory.py`` compares it with measured peaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from training import memory

MB = 2**20
CPU_PROCESS_MB = 420
"""A worker child's resident memory before the model loads: Python, torch, transformers,
tokenizers (measured on the CPU: bench/estimate_memory.py)."""
CUDA_CONTEXT_MB = 600
"""The CUDA context and kernels on a GPU, outside torch's allocated count."""
PARTS = ("weights", "gradients", "optimizer", "reference", "critic", "reward_models",
         "kv_cache", "decode_copies", "activations", "runtime")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: its parameter count and its layers' shape."""

    parameters: int
    hidden_size: int
    layers: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], parameters: int) -> ModelShape:
        """From a ``config.json`` (a multimodal one's ``text_config``) and the parameter
        count its safetensors hold."""
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
        c: dict[str, Any] = text or config
        hidden = int(c.get("hidden_size") or c.get("d_model") or c.get("n_embd") or 0)
        heads = int(c.get("num_attention_heads") or c.get("n_head") or 1)
        return cls(parameters=int(parameters), hidden_size=hidden,
                   layers=int(c.get("num_hidden_layers") or c.get("n_layer") or 1),
                   intermediate_size=int(c.get("intermediate_size") or 4 * hidden),
                   heads=heads, kv_heads=int(c.get("num_key_value_heads") or heads),
                   head_dim=int(c.get("head_dim") or hidden // max(1, heads)),
                   vocab_size=int(c.get("vocab_size") or 0),
                   tied=bool(c.get("tie_word_embeddings", config.get("tie_word_embeddings",
                                                                     True))))

    def as_config(self) -> Any:
        """The attributes :mod:`training.memory` reads from a transformers config."""
        return SimpleNamespace(hidden_size=self.hidden_size, num_hidden_layers=self.layers,
                               intermediate_size=self.intermediate_size,
                               num_attention_heads=self.heads,
                               num_key_value_heads=self.kv_heads, head_dim=self.head_dim,
                               vocab_size=self.vocab_size)

    def lora_parameters(self, rank: int) -> int:
        """LoRA's A and B on every linear layer of the trunk (PEFT's "all-linear")."""
        h, inter, q, kv = (self.hidden_size, self.intermediate_size,
                           self.heads * self.head_dim, self.kv_heads * self.head_dim)
        per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + inter) + (inter + h)
        return rank * per_layer * self.layers

    def backbone_parameters(self) -> int:
        """Without the LM head (a critic's or reward model's trunk)."""
        return self.parameters - (0 if self.tied else self.vocab_size * self.hidden_size)


@dataclass(frozen=True)
class Estimate:
    parts: dict[str, float]  # MB
    peak_mb: float
    precision: str  # fp32 | bf16
    micro_batch: int

    def as_json(self) -> dict[str, Any]:
        return {"peak_mb_per_device": round(self.peak_mb),
                "parts": {k: round(v) for k, v in self.parts.items()},
                "precision": self.precision, "micro_batch": self.micro_batch}


def precision_of(config: Any, *, device: str, bf16: bool) -> str:
    """``auto`` is bf16 on a GPU that has it, fp32 elsewhere (as the engine resolves it)."""
    if config.precision in ("fp32", "bf16"):
        return str(config.precision)
    return "bf16" if device == "cuda" and bf16 else "fp32"


def _trainable(shape: ModelShape, lora_rank: int, param_bytes: int) -> tuple[int, int]:
    """Trainable parameters and the bytes of each (LoRA's adapters are float32)."""
    if lora_rank:
        return shape.lora_parameters(lora_rank), 4
    return shape.parameters, param_bytes


def _rollout(config: Any, policy: ModelShape, p: int, *, device: str, prompt_tokens: int,
             reward_models: Sequence[ModelShape]) -> tuple[dict[str, float], int, float]:
    group = int(getattr(config, "group_size", 1) or 1)
    rows = int(config.prompts_per_step) * group
    new = int(config.max_new_tokens)
    lora = int(config.lora_rank)
    trainable, t_bytes = _trainable(policy, lora, p)
    is_ppo = hasattr(config, "critic_init")
    kl = getattr(config, "beta", getattr(config, "kl_coef", 0.0)) or 0.0
    needs_reference = not lora and (kl > 0 or getattr(config, "kl_stop", None) is not None)
    critic_weights = critic_trainable = 0.0
    critic_bytes = 4
    if is_ppo:
        backbone = policy.backbone_parameters()
        critic_weights = backbone * p
        critic_trainable, critic_bytes = (
            (policy.lora_parameters(lora), 4) if lora else (backbone, p))
    update_rows = rows // max(1, int(getattr(config, "minibatches", 1) or 1))
    grad_bytes = trainable * t_bytes + critic_trainable * critic_bytes
    shape = dict(model_config=policy.as_config(), prompt_tokens=prompt_tokens,
                 completion_tokens=new, group_size=group, param_bytes=p,
                 checkpointing=bool(config.gradient_checkpointing), trunks=2 if is_ppo else 1)
    micro = int(config.micro_batch_size) or memory.auto_micro_batch(
        update_rows, config.activation_memory_mb, grad_bytes=grad_bytes, **shape)
    micro = min(micro, update_rows)
    activations = memory.activation_bytes(rows=micro, **shape)
    if not getattr(config, "entropy_coef", 0.0):
        # the engine's fused LM head keeps one float32 copy of a pass's logits, where
        # memory.activation_bytes (sizing micro-batches with a margin) counts autograd's two
        activations -= micro * new * policy.vocab_size * 4
    # a split step keeps the gradients so far beside each later pass; one pass holds the
    # larger of the two (its gradients appear as the backward frees its activations)
    training = grad_bytes + activations if micro < update_rows else max(grad_bytes, activations)
    kv = 2 * policy.layers * policy.kv_heads * policy.head_dim * rows * (prompt_tokens + new) * p
    lean_copies = policy.parameters * 4 if device == "cpu" and p == 4 else 0
    parts = {
        "weights": policy.parameters * p,
        "gradients": grad_bytes,
        "optimizer": 2 * trainable * t_bytes + (2 * critic_trainable * critic_bytes),
        "reference": policy.parameters * p if needs_reference else 0,
        "critic": critic_weights,
        "reward_models": sum(m.parameters * p for m in reward_models),
        "kv_cache": kv + 2 * rows * policy.vocab_size * 4,  # and a step's float32 logits
        "decode_copies": lean_copies,
        "activations": activations,
    }
    return parts, micro, training


def _reward_model(config: Any, base: ModelShape, p: int, prompt_tokens: int,
                  response_tokens: int) -> tuple[dict[str, float], int, float]:
    trainable, t_bytes = _trainable(base, int(config.lora_rank), p)
    rows = 2 * int(config.batch_size)  # chosen and rejected
    length = min(int(config.max_length), prompt_tokens + response_tokens)
    shape = dict(model_config=base.as_config(), prompt_tokens=length, completion_tokens=0,
                 group_size=1, param_bytes=p, checkpointing=bool(config.gradient_checkpointing))
    activations = memory.activation_bytes(rows=rows, **shape)
    weights = base.backbone_parameters() + base.hidden_size  # the score head is one row
    parts = {"weights": weights * p, "gradients": trainable * t_bytes,
             "optimizer": 2 * trainable * t_bytes, "reference": 0, "critic": 0,
             "reward_models": 0, "kv_cache": 0, "decode_copies": 0, "activations": activations}
    return parts, rows, trainable * t_bytes + activations


def estimate(config: Any, policy: ModelShape, *, device: str, bf16: bool, prompt_tokens: int,
             response_tokens: int = 64, reward_models: Sequence[ModelShape] = ()) -> Estimate:
    """The peak memory of a run with ``config`` (an algorithm's config dataclass) starting
    from ``policy`` on a ``device`` ("cpu" or "cuda", ``bf16`` whether it has bf16), whose
    rendered prompts are about ``prompt_tokens`` long (and, for a reward model, whose
    responses are about ``response_tokens``)."""
    precision = precision_of(config, device=device, bf16=bf16)
    p = 2 if precision == "bf16" else 4
    if hasattr(config, "prompts_per_step"):
        parts, micro, training = _rollout(config, policy, p, device=device,
                                          prompt_tokens=prompt_tokens, reward_models=reward_models)
        sampling = parts["kv_cache"] + parts["decode_copies"]
    elif hasattr(config, "batch_size"):
        parts, micro, training = _reward_model(config, policy, p, prompt_tokens,
                                               response_tokens)
        sampling = 0.0
    else:  # an algorithm of another shape: what any trainer holds, no activations known
        trainable, t_bytes = _trainable(policy, int(config.lora_rank), p)
        parts = dict.fromkeys(PARTS, 0.0) | {
            "weights": policy.parameters * p, "gradients": trainable * t_bytes,
            "optimizer": 2 * trainable * t_bytes}
        micro, training, sampling = 0, trainable * t_bytes, 0.0
    parts["runtime"] = CPU_PROCESS_MB * MB if device == "cpu" else 0
    mb = {k: parts[k] / MB for k in PARTS}
    kept = sum(mb[k] for k in ("weights", "optimizer", "reference", "critic", "reward_models",
                               "runtime"))
    # A GPU's caching allocator serves one phase from what the other freed; on the CPU the
    # decoder's laid-out copies come from oneDNN's allocator while the kept heap
    # (training.heap) still holds the training pass's pages, so there the phases add up.
    phases = sampling + training if device == "cpu" else max(sampling, training)
    peak = kept + phases / MB
    return Estimate(mb, peak, precision, micro)


MAX_PROMPT_TOKENS = 1024  # training.engine's truncation (imported there: that one needs torch)


CHARS_PER_TOKEN = 4  # English text in the tokenizers of these families, roughly


def prompt_tokens_of(prompt_chars: Sequence[int], *, chat_template: bool,
                     max_prompt_tokens: int = MAX_PROMPT_TOKENS) -> int:
    """The rendered prompt length a run will see, from its prompts' lengths in characters
    (about 4 characters a token in English, plus a chat template's system turn)."""
    longest = max(prompt_chars, default=200)
    tokens = math.ceil(longest / CHARS_PER_TOKEN) + (32 if chat_template else 0)
    return min(tokens, max_prompt_tokens)


def response_tokens_of(response_chars: Sequence[int]) -> int:
    """A reward model's responses in tokens, from their lengths in characters (and the
    template's end-of-turn marks)."""
    return math.ceil(max(response_chars, default=256) / CHARS_PER_TOKEN) + 8
