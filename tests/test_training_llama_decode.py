"""The lean prefill and decode steps give the model's own logits (left padding, grouped-query
attention, biases), and everything they do not reproduce goes through the model's forward."""
from __future__ import annotations

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from tests.training_helpers import one_torch_thread, tiny_model, tiny_tokenizer
from training import llama_decode
from training.decode import _model_steps, decoder_and_head, uses_lean_decoder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


PROMPTS = ["Summarize: the committee met for four hours and then agreed.", "Hi"]
SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def _small(kind: type, config: type, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return kind(config(**{**SMALL, **overrides})).eval()


def _both_ways(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, steps: int = 5
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The logits after the prompt and after each of ``steps`` random tokens, lean and through
    the model's forward, for 3 rows per prompt."""
    rows = torch.arange(len(ids)).repeat_interleave(3)
    parts = decoder_and_head(model)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        lean = llama_decode.lean_decoder(model, *parts, rows=len(rows),
                                         capacity=ids.shape[1] + steps + 1)
        assert lean is not None
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        plain, advance = _model_steps(*parts, ids, mask, positions, rows, steps + 1)
        out = [(lean.prefill(ids, mask, positions, rows), plain)]
        for _ in range(steps):
            token = torch.randint(0, vocab, (len(rows),), generator=generator)
            out.append((lean.step(token), advance(token)))
    return out


def test_the_lean_steps_give_the_models_logits_with_a_left_padded_prompt():
    enc = tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    assert enc["attention_mask"][1, 0] == 0  # the second prompt is left-padded

    pairs = _both_ways(tiny_model(), enc["input_ids"], enc["attention_mask"])

    for lean, plain in pairs:
        assert lean.shape == plain.shape == (6, tiny_model().config.vocab_size)
        assert torch.allclose(lean, plain, atol=1e-5)
    assert not torch.allclose(pairs[1][0], pairs[2][0])  # each step's logits are its own


def test_the_lean_steps_give_the_models_logits_in_bf16():
    model = _small(LlamaForCausalLM, LlamaConfig).to(torch.bfloat16)
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0

    for lean, plain in _both_ways(model, ids, mask):
        assert lean.dtype == torch.bfloat16
        assert torch.allclose(lean.float(), plain.float(), atol=2e-2)


def test_qwen2s_attention_biases_and_untied_head_are_reproduced():
    model = _small(Qwen2ForCausalLM, Qwen2Config, tie_word_embeddings=False)
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    with torch.no_grad():  # biases away from their zero initialisation
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_()
    ids = torch.randint(0, 300, (1, 7), generator=torch.Generator().manual_seed(0))

    for lean, plain in _both_ways(model, ids, torch.ones_like(ids)):
        assert torch.allclose(lean, plain, atol=1e-5)


def _left_padded_ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    return ids, mask


def test_qwen3s_per_head_q_and_k_norms_are_reproduced():
    model = _small(Qwen3ForCausalLM, Qwen3Config, head_dim=16)
    with torch.no_grad():  # norm weights away from their initial ones
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)

    for lean, plain in _both_ways(model, *_left_padded_ids()):
        assert torch.allclose(lean, plain, atol=1e-5)


def test_mistral_decodes_lean_while_its_window_holds_the_whole_rollout():
    model = _small(MistralForCausalLM, MistralConfig, sliding_window=32)
    parts = decoder_and_head(model)

    for lean, plain in _both_ways(model, *_left_padded_ids()):  # 9 + 5 + 1 <= 32 positions
        assert torch.allclose(lean, plain, atol=1e-5)
    assert llama_decode.lean_decoder(model, *parts, rows=2, capacity=33) is None
    assert uses_lean_decoder(model, capacity=32) and not uses_lean_decoder(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["merged", "factored"])
def test_lora_adapters_are_in_the_lean_steps_logits(dtype):
    """A LoRA-wrapped policy (the engine's all-linear adapters, trained away from zero)
    decodes through the lean steps with its adapters: merged into the laid-out weights on
    the CPU at fp32, as PEFT's thin products at bf16."""
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(_small(LlamaForCausalLM, LlamaConfig).to(dtype),
                             LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                        init_lora_weights=False))
    assert uses_lean_decoder(adapted)
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with adapted.disable_adapter(), torch.inference_mode():  # the adapters change the logits
        base = adapted(input_ids=ids, attention_mask=mask).logits[:, -1]

    pairs = _both_ways(adapted, ids, mask)

    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for lean, plain in pairs:
        assert torch.allclose(lean.float(), plain.float(), atol=tolerance)
    first = pairs[0][0].float().view(2, 3, -1)[:, 0]
    assert not torch.allclose(first, base.float(), atol=0.1)


def test_what_the_steps_do_not_reproduce_goes_through_the_models_forward():
    from peft import LoraConfig, get_peft_model

    assert uses_lean_decoder(tiny_model())
    dora = get_peft_model(_small(LlamaForCausalLM, LlamaConfig),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True))
    assert not uses_lean_decoder(dora)  # DoRA's magnitudes would be skipped
    assert not uses_lean_decoder(_small(LlamaForCausalLM, LlamaConfig, hidden_act="gelu"))
    sliding = _small(Qwen2ForCausalLM, Qwen2Config, use_sliding_window=True, sliding_window=4,
                     max_window_layers=0)  # every layer slides (none would below layer 0)
    assert not uses_lean_decoder(sliding, capacity=16)
    dynamic = _small(LlamaForCausalLM, LlamaConfig,
                     rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    assert not uses_lean_decoder(dynamic)
