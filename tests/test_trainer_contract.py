"""What every trainer promises, checked for every declared algorithm on the tiny model:
cancel (before or after a step), checkpoints every N steps and at the end (safetensors, a
manifest that names no server path), resume exactly where a checkpoint left off, micro-batches
that change memory and never the update, and LoRA runs whose checkpoint plain transformers
loads. An algorithm added to training/algorithms/ is checked here without a line written for
it; what is particular to one algorithm is tested in its own module."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.training_helpers import (
    TINY_LLAMA,
    files_with_pickle_suffix,
    grpo_config,
    one_torch_thread,
    ppo_config,
    rm_config,
)
from training.algorithms import AlgorithmSpec, algorithms
from training.checkpoints import MANIFEST, STATE_DIR
from training.metrics import ListSink

SPECS = [s for s in algorithms() if not s.engine.startswith("tests.")]
ROLLOUT_SPECS = [s for s in SPECS if "micro_batch_size" in {
    f.name for f in s.config.hyperparameter_fields()}]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def config_for(spec: AlgorithmSpec, tmp_path: Path, **hyperparameters: Any) -> Any:
    """A small config of the algorithm on the tiny model (its own helper's defaults)."""
    if spec.id == "ppo":
        return ppo_config(tmp_path, **hyperparameters)
    if spec.produces == "reward":
        return rm_config(tmp_path, **{"epochs": 100.0, "eval_every": 1, **hyperparameters})
    return grpo_config(tmp_path, algorithm=spec.id, **hyperparameters)


def train(spec: AlgorithmSpec, config: Any, **kwargs: Any) -> tuple[Any, dict[str, float]]:
    return importlib.import_module(spec.engine).train(config, **kwargs)


def tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as fh:
        return {key: fh.get_tensor(key) for key in fh.keys()}


ids = [s.id for s in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_cancel_after_the_first_step_keeps_a_checkpoint_to_resume_from(spec, tmp_path):
    sink = ListSink()
    result, _ = train(spec, config_for(spec, tmp_path, max_steps=3), sink=sink,
                      should_stop=lambda: len(sink.metrics) >= 1)
    assert (result.steps, result.stop_reason) == (1, "cancelled")
    assert [step for step, _ in sink.metrics] == [1]
    assert result.checkpoints == [str(tmp_path / "out" / "step-1")]


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_run_cancelled_before_its_first_step_saves_nothing(spec, tmp_path):
    sink = ListSink()
    result, last = train(spec, config_for(spec, tmp_path), sink=sink, should_stop=lambda: True)
    assert (result.steps, result.stop_reason, result.checkpoints) == (0, "cancelled", [])
    assert last == {} and sink.metrics == [] and sink.checkpoints == []


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_checkpoints_every_n_steps_and_at_the_end_name_no_server_path(spec, tmp_path):
    sink = ListSink()
    result, _ = train(spec, config_for(spec, tmp_path, max_steps=3, checkpoint_every=2),
                      sink=sink)
    out = tmp_path / "out"
    assert result.checkpoints == [str(out / "step-2"), str(out / "step-3")]
    assert sink.checkpoints == [(2, str(out / "step-2")), (3, str(out / "step-3"))]
    for step in (2, 3):
        folder = out / f"step-{step}"
        text = (folder / MANIFEST).read_text()
        manifest = json.loads(text)
        assert manifest["step"] == step and manifest["algorithm"] == spec.id
        assert manifest["hyperparameters"]["max_steps"] == 3
        assert str(TINY_LLAMA) not in text and str(tmp_path) not in text  # ids, not paths
        if spec.uses_rewards:  # the sources as stored, without a path
            assert manifest["rewards"] == [{"type": "length", "weight": 1.0, "target": 20}]
        assert json.loads((folder / STATE_DIR / "state.json").read_text())["step"] == step
        assert files_with_pickle_suffix(folder) == []
    assert not (out / "step-1").exists()


@pytest.mark.parametrize("spec", SPECS, ids=ids)
@pytest.mark.parametrize("extra", [{}, {"lora_rank": 2, "learning_rate": 1e-2}],
                         ids=["full", "lora"])
def test_a_resumed_run_continues_exactly_where_the_checkpoint_left_off(spec, extra, tmp_path):
    straight, second = ListSink(), ListSink()
    train(spec, config_for(spec, tmp_path, output="straight", max_steps=3, checkpoint_every=1,
                           **extra), sink=straight)
    train(spec, config_for(spec, tmp_path, output="split", max_steps=2, checkpoint_every=1,
                           **extra))
    result, _ = train(spec, config_for(spec, tmp_path, output="split", max_steps=3,
                                       checkpoint_every=1, **extra),
                      sink=second, resume_from=str(tmp_path / "split" / "step-2"))

    assert (result.steps, result.stop_reason) == (3, "max_steps")
    assert [step for step, _ in second.metrics] == [3]
    expected, actual = straight.metrics[2][1], second.metrics[0][1]
    keys = [k for k in ("optim/grad_norm", "optim/lr", spec.reward_key, "loss/policy",
                        "loss/train") if k in expected]
    assert "optim/grad_norm" in keys
    for key in keys:
        assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-7), key
    resumed = tensors(result.checkpoints[0])
    for key, value in tensors(tmp_path / "straight" / "step-3").items():
        assert torch.allclose(resumed[key], value, atol=1e-6), key


@pytest.mark.parametrize("spec", ROLLOUT_SPECS, ids=[s.id for s in ROLLOUT_SPECS])
def test_micro_batches_give_the_same_update_as_one_pass(spec, tmp_path):
    whole, parts = ListSink(), ListSink()
    a, _ = train(spec, config_for(spec, tmp_path, output="whole", max_steps=1,
                                  micro_batch_size=0), sink=whole)
    b, _ = train(spec, config_for(spec, tmp_path, output="parts", max_steps=1,
                                  micro_batch_size=1), sink=parts)
    one, many = whole.metrics[0][1], parts.metrics[0][1]
    for key in ("loss/total", "loss/policy", "entropy/mean", "optim/grad_norm",
                "reward/mean"):
        assert many[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    # Adam's first update is about lr x sign(gradient) = 1e-3 per weight: 1e-5 is 1% of it
    after_whole, after_parts = tensors(a.checkpoints[0]), tensors(b.checkpoints[0])
    for key, value in after_whole.items():
        assert torch.allclose(after_parts[key], value, atol=1e-5), key


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_lora_run_saves_a_merged_checkpoint_plain_transformers_loads(spec, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    result, _ = train(spec, config_for(spec, tmp_path, max_steps=2, lora_rank=2,
                                       learning_rate=1e-2))
    checkpoint = result.checkpoints[-1]
    saved = tensors(checkpoint)
    assert not any("lora" in key or key.startswith("base_model") for key in saved)
    with safe_open(str(Path(checkpoint) / STATE_DIR / "adapter.safetensors"), "pt") as fh:
        assert fh.keys() and all("lora" in key or "score" in key or "classifier" in key
                                 for key in fh.keys())
    loader = (AutoModelForSequenceClassification if spec.produces == "reward"
              else AutoModelForCausalLM)
    assert loader.from_pretrained(checkpoint).config.num_hidden_layers == 2
    base = tensors(TINY_LLAMA)
    assert any(not torch.equal(saved[k], base[k]) for k in base if k in saved)  # merged
