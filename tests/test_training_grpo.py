"""GRPO end to end on tiny-llama (CPU): metrics, samples, checkpoints, cancel, resume, LoRA,
KL stop. Each run is 2 prompts x 2 completions of at most 8 tokens per step."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from tests.training_helpers import (
    TINY_LLAMA,
    grpo_config,
    one_torch_thread,
)
from training import losses
from training.advantages import group_advantages
from training.checkpoints import STATE_DIR
from training.grpo import setup_run, train
from training.metrics import ListSink


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


# the keys API.md lists that apply to a GRPO run with one length reward
API_KEYS = {
    "reward/mean", "reward/std", "reward/length/mean", "reward/frac_zero_std", "kl/mean",
    "entropy/mean", "loss/policy", "clip/low", "clip/high", "clip/region",
    "completion/length_mean", "completion/truncated_frac", "optim/lr", "optim/grad_norm",
    "perf/step_s", "perf/tokens_per_s", "perf/peak_mem_mb",
}


def _tensors(model_dir: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as fh:
        return {key: fh.get_tensor(key) for key in fh.keys()}


def test_train_logs_each_step_with_the_api_metric_keys(tmp_path):
    sink = ListSink()

    result, last = train(grpo_config(tmp_path, max_steps=3), sink=sink)

    assert (result.steps, result.stop_reason) == (3, "max_steps")
    assert [step for step, _ in sink.metrics] == [1, 2, 3]
    for _, metrics in sink.metrics:
        assert API_KEYS <= metrics.keys()
        assert all(math.isfinite(v) for v in metrics.values())
        assert metrics["reward/length/mean"] == pytest.approx(metrics["reward/mean"])
        assert 0 < metrics["completion/length_mean"] <= 8
        assert 0 <= metrics["completion/truncated_frac"] <= 1
        assert metrics["optim/lr"] == pytest.approx(1e-3)
        assert metrics["perf/tokens_per_s"] > 0 and metrics["perf/peak_mem_mb"] > 0
        # one update per rollout: the ratio is exactly 1, nothing is clipped
        assert metrics["clip/region"] == metrics["clip/low"] == metrics["clip/high"] == 0.0
    assert sink.metrics[0][1]["kl/mean"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert last == sink.metrics[-1][1]


def test_train_logs_samples_with_their_rewards_and_advantages(tmp_path):
    sink = ListSink()

    train(grpo_config(tmp_path, max_steps=2), sink=sink)

    assert [step for step, _ in sink.samples] == [1, 2]
    prompts = {json.loads(line)["prompt"]
               for line in (tmp_path / "rows.jsonl").read_text().splitlines()}
    for _, samples in sink.samples:
        assert [s.index for s in samples] == [0, 1, 2, 3]  # 2 prompts x 2 completions
        assert samples[0].prompt == samples[1].prompt != samples[2].prompt
        for sample in samples:
            assert sample.prompt in prompts
            assert sample.rewards == {"length": -abs(20 - len(sample.completion))}
            assert sample.reward == sample.rewards["length"]
        advantages, _ = group_advantages(torch.tensor([s.reward for s in samples]), 2)
        assert [s.advantage for s in samples] == pytest.approx(advantages.tolist(), abs=1e-5)


def test_train_keeps_only_samples_per_step_samples(tmp_path):
    sink = ListSink()

    train(grpo_config(tmp_path, max_steps=1, samples_per_step=1), sink=sink)

    assert len(sink.samples[0][1]) == 1


def test_beta_zero_builds_no_reference_model_and_logs_no_kl(tmp_path):
    sink = ListSink()
    config = grpo_config(tmp_path, max_steps=2, beta=0.0)

    state, start = setup_run(config, None)
    train(config, sink=sink)

    assert start == 0 and state.reference is None
    for _, metrics in sink.metrics:
        assert "kl/mean" not in metrics and "loss/kl" not in metrics
        assert "loss/policy" in metrics


def test_a_positive_beta_builds_a_frozen_reference_model(tmp_path):
    state, _ = setup_run(grpo_config(tmp_path, beta=0.04), None)

    assert state.reference is not None
    assert not any(p.requires_grad for p in state.reference.parameters())
    assert state.reference is not state.policy


def test_a_lora_run_saves_a_checkpoint_that_plain_transformers_loads(tmp_path):
    sink = ListSink()

    result, _ = train(grpo_config(tmp_path, max_steps=2, lora_rank=2, learning_rate=1e-2),
                      sink=sink)

    checkpoint = result.checkpoints[-1]
    tensors, base = _tensors(checkpoint), _tensors(TINY_LLAMA)
    assert tensors.keys() == base.keys()  # merged: no lora_A/B, no base_model.model prefix
    assert not any("lora" in key or key.startswith("base_model") for key in tensors)
    assert any(not torch.equal(tensors[k], base[k]) for k in base)  # the adapters were merged
    loaded = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert loaded.config.num_hidden_layers == 2
    with safe_open(str(Path(checkpoint) / STATE_DIR / "adapter.safetensors"), "pt") as fh:
        assert fh.keys() and all("lora" in key for key in fh.keys())
    # the reference is the base with adapters disabled: no KL before the first update
    assert sink.metrics[0][1]["kl/mean"] == pytest.approx(0.0, abs=1e-6)
    assert sink.metrics[1][1]["kl/mean"] > 0


def test_a_resumed_run_logs_the_learning_rate_of_the_step_it_runs(tmp_path):
    # warm-up over 4 steps at 1e-3: steps 1, 2, 3 run at 2.5e-4, 5e-4, 7.5e-4
    straight, resumed = ListSink(), ListSink()
    train(grpo_config(tmp_path, output="a", max_steps=3, warmup_steps=4), sink=straight)
    train(grpo_config(tmp_path, output="b", max_steps=2, warmup_steps=4))

    train(grpo_config(tmp_path, output="b", max_steps=3, warmup_steps=4), sink=resumed,
          resume_from=str(tmp_path / "b" / "step-2"))

    assert straight.series("optim/lr") == pytest.approx([2.5e-4, 5e-4, 7.5e-4])
    assert resumed.series("optim/lr") == pytest.approx([7.5e-4])


def test_kl_stop_ends_the_run_once_kl_passes_the_threshold(tmp_path):
    sink = ListSink()

    result, last = train(grpo_config(tmp_path, max_steps=6, kl_stop=0.0, learning_rate=0.05),
                         sink=sink)

    assert result.stop_reason == "kl_stop"
    assert 2 <= result.steps < 6
    assert [step for step, _ in sink.metrics] == list(range(1, result.steps + 1))
    assert last["kl/mean"] > 0.0
    assert all(kl <= 0.0 for kl in sink.series("kl/mean")[:-1])
    assert result.checkpoints == [str(tmp_path / "out" / f"step-{result.steps}")]


def test_clip_fractions_report_the_updates_where_clipping_can_happen(tmp_path, monkeypatch):
    # The first update of a rollout has ratio exactly 1 (the old log-probs are the policy's
    # own), so only the later updates (num_iterations > 1) can clip. A clip metric taken from
    # the first update alone is 0 in every run.
    calls: list[dict[str, float]] = []

    def spy(*args, **kwargs):
        loss, metrics = losses.grpo_loss(*args, **kwargs)
        calls.append(metrics)
        return loss, metrics

    monkeypatch.setattr("training.policy_gradient.grpo_loss", spy)
    sink = ListSink()

    train(grpo_config(tmp_path, max_steps=1, num_iterations=2, learning_rate=1e-2), sink=sink)

    assert len(calls) == 2  # one micro-batch, two updates
    assert calls[0]["clip/region"] == 0.0
    assert calls[1]["clip/region"] > 0.0  # the second update is clipped
    assert sink.metrics[0][1]["clip/region"] > 0.0


@pytest.mark.parametrize(("loss_type", "scale_rewards", "num_iterations"), [
    ("bnpo", "batch", 2),
    ("dr_grpo", "none", 1),
])
def test_every_loss_type_and_scaling_trains(tmp_path, loss_type, scale_rewards, num_iterations):
    sink = ListSink()

    result, last = train(grpo_config(tmp_path, max_steps=1, loss_type=loss_type,
                                     scale_rewards=scale_rewards, group_size=3,
                                     num_iterations=num_iterations), sink=sink)

    assert result.steps == 1
    assert API_KEYS <= last.keys()
    assert all(math.isfinite(v) for v in last.values())
    assert len(sink.samples[0][1]) == 6  # 2 prompts x 3


def test_chat_prompts_and_several_reward_sources_are_logged_by_source(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"Say {word}."}], "answer": word}
            for word in ("yes", "no", "maybe")]
    rewards = [{"type": "length", "target": 20, "weight": 1.0},
               {"type": "exact_match", "column": "answer", "weight": 2.0},
               {"type": "length", "target": 5, "weight": 0.5}]
    sink = ListSink()

    _, last = train(grpo_config(tmp_path, rows=rows, rewards=rewards, max_steps=1), sink=sink)

    for name in ("length_1", "exact_match", "length_2"):
        assert f"reward/{name}/mean" in last and f"reward/{name}/std" in last
    for sample in sink.samples[0][1]:
        assert sample.prompt.startswith("user: Say ")
        assert sample.rewards.keys() == {"length_1", "exact_match", "length_2"}
        n = len(sample.completion)
        assert sample.rewards["length_1"] == -abs(20 - n)
        assert sample.rewards["length_2"] == -abs(5 - n)
        assert sample.reward == pytest.approx(-abs(20 - n) + 2 * sample.rewards["exact_match"]
                                              - 0.5 * abs(5 - n))
