"""The engine on a GPU (tiny-llama): bf16 steps, ``precision: auto`` choosing bf16, and a
checkpoint written on the GPU that loads on the CPU. Marked ``cuda``; without a CUDA device
they are skipped (this project's development machines have none: bench/gpu_check.sh runs
them on a lent GPU)."""
from __future__ import annotations

import math

import pytest
import torch

from tests.training_helpers import PROMPTS, TINY_LLAMA, write_jsonl

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _config(tmp_path, **hyperparameters):
    from training.algorithms import build_config

    dataset = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": p} for p in PROMPTS])
    values = {"max_steps": 2, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 8,
              "learning_rate": 1e-3, **hyperparameters}
    return build_config("grpo", values, model_path=str(TINY_LLAMA), dataset_path=str(dataset),
                        output_dir=str(tmp_path / "out"), device="cuda",
                        rewards=[{"type": "length", "target": 20, "weight": 1.0}])


def test_auto_precision_is_bf16_on_a_gpu_that_has_it(tmp_path):
    from training.grpo import setup_run
    from training.runtime import resolve_dtype

    state, _ = setup_run(_config(tmp_path, precision="auto"), None)

    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == expected
    assert next(state.policy.parameters()).dtype == expected
    assert next(state.policy.parameters()).device.type == "cuda"


def test_bf16_grpo_steps_train_on_the_gpu(tmp_path):
    from training.grpo import train
    from training.metrics import ListSink

    sink = ListSink()
    result, last = train(_config(tmp_path, precision="bf16"), sink=sink)

    assert result.steps == 2
    assert all(math.isfinite(v) for v in last.values())
    assert sink.metrics[0][1]["kl/mean"] == pytest.approx(0.0, abs=1e-3)  # policy == reference
    assert last["optim/grad_norm"] > 0
    # on CUDA the peak is the allocator's, well below the process's resident memory
    assert 0 < last["perf/peak_mem_mb"] < 2048


def test_a_checkpoint_written_on_the_gpu_loads_on_the_cpu(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from training.grpo import train

    result, _ = train(_config(tmp_path, precision="bf16", max_steps=1))

    checkpoint = result.checkpoints[-1]
    model = AutoModelForCausalLM.from_pretrained(checkpoint, device_map="cpu")
    saved = load_file(f"{checkpoint}/model.safetensors", device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    for name, tensor in model.state_dict().items():
        if name in saved:
            assert torch.equal(tensor, saved[name].to(tensor.dtype)), name
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()
