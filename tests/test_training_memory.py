"""Memory options change memory, never the numbers: gradient checkpointing gives the same
losses and gradients as keeping every activation."""
from __future__ import annotations

import pytest

from tests.test_training_reward_model import rm_config
from tests.training_helpers import grpo_config, one_torch_thread
from training.metrics import ListSink


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


KEYS = ("loss/policy", "loss/total", "kl/mean", "optim/grad_norm", "reward/mean")


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_gradient_checkpointing_gives_the_same_grpo_steps(tmp_path, lora_rank):
    from training.grpo import train

    runs = []
    for checkpointing in (False, True):
        sink = ListSink()
        train(grpo_config(tmp_path, output=f"out-{checkpointing}", max_steps=2,
                          lora_rank=lora_rank, gradient_checkpointing=checkpointing), sink=sink)
        runs.append(sink.metrics)
    for (step_a, a), (step_b, b) in zip(*runs, strict=True):
        assert step_a == step_b
        for key in KEYS:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_gradient_checkpointing_gives_the_same_reward_model_steps(tmp_path):
    from training.reward_model import train

    runs = []
    for checkpointing in (False, True):
        sink = ListSink()
        train(rm_config(tmp_path, output=f"out-{checkpointing}", max_steps=2,
                        gradient_checkpointing=checkpointing), sink=sink)
        runs.append([m["loss/train"] for _, m in sink.metrics])
    assert runs[0] == pytest.approx(runs[1], rel=1e-4)


def test_gradient_checkpointing_gives_the_same_ppo_steps(tmp_path):
    from tests.test_training_ppo import ppo_config
    from training.ppo import train

    runs = []
    for checkpointing in (False, True):
        sink = ListSink()
        train(ppo_config(tmp_path, output=f"out-{checkpointing}", max_steps=1,
                         gradient_checkpointing=checkpointing), sink=sink)
        runs.append(sink.metrics[0][1])
    for key in ("loss/policy", "loss/value", "optim/grad_norm"):
        assert runs[0][key] == pytest.approx(runs[1][key], rel=1e-4, abs=1e-6), key


def test_gradient_checkpointing_is_really_on_for_the_trained_model(tmp_path):
    from training.grpo import setup_run

    on, _ = setup_run(grpo_config(tmp_path, gradient_checkpointing=True), None)
    off, _ = setup_run(grpo_config(tmp_path, output="off"), None)
    assert on.policy.is_activation_checkpointing and on.policy.training
    assert not off.policy.is_activation_checkpointing
