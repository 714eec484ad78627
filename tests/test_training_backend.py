"""The device backend (training/backend.py) on real GRPO steps of tiny-llama: its speed and
memory measures change no number (a step with every measure switched off, or on the plain
backend a GPU gets, samples the same completions and computes the same update), the switches
the benchmarks use all run, and the layers are steered by a mode, not by replacing any
module's forward."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.training_helpers import grpo_config, one_torch_thread
from training.backend import Backend
from training.config import EngineSwitches

EVERY_MEASURE_OFF = EngineSwitches(
    lean_decoder=False, packed_decode=False, onednn="never", onednn_training=False,
    in_place_gradients=False, fused_head=False, share_prompts=False,
    frozen_passes_whole=False, fused_adamw=False, return_freed_memory=False,
    keep_training_heap=False, keep_heap_between_steps=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def _first_step(tmp_path, engine: EngineSwitches = EngineSwitches()):
    """One GRPO step (with a reference: the frozen passes run too) and its samples."""
    from training.grpo import train
    from training.metrics import ListSink

    config = dataclasses.replace(grpo_config(tmp_path, max_steps=1, beta=0.1), engine=engine)
    sink = ListSink()
    _, metrics = train(config, sink=sink)
    completions = [s.completion for _, samples in sink.samples for s in samples]
    return metrics, completions


def _assert_same_step(got, expected):
    (metrics, completions), (want, want_completions) = got, expected
    assert completions == want_completions and any(completions)
    for key in ("loss/total", "optim/grad_norm", "entropy/mean", "reward/mean"):
        assert metrics[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return _first_step(tmp_path_factory.mktemp("engine"))


@pytest.mark.parametrize("engine", [
    EVERY_MEASURE_OFF,
    EngineSwitches(onednn="always", lean_decoder=False),  # packed weights in the model forward
], ids=["every_measure_off", "onednn_everywhere"])
def test_the_cpu_measures_change_no_number(engine, measured, tmp_path):
    _assert_same_step(_first_step(tmp_path, engine), measured)


def test_the_plain_backend_a_gpu_gets_computes_the_same_step(measured, tmp_path, monkeypatch):
    """The backend CUDA is given (plain torch, gradients added in place, fused AdamW), run on
    the CPU: no GPU here, and nothing in it is specific to one."""
    import training.loop

    monkeypatch.setattr(training.loop, "backend_for", lambda device, switches: Backend(
        device, switches))
    _assert_same_step(_first_step(tmp_path), measured)


def test_sampling_through_generate_trains_too(tmp_path):
    metrics, completions = _first_step(tmp_path, EngineSwitches(own_sampler=False))
    assert len(completions) == 4 and metrics["optim/grad_norm"] > 0


def test_layers_are_steered_by_a_mode_and_no_forward_is_replaced(tmp_path):
    """During a real update a layer of the trunk is the engine's layer with its mode set (its
    weight gradient added in place); no module of the policy has its own ``forward``;
    afterwards every mode is gone."""
    from training.grpo import ESTIMATOR
    from training.layers import EngineLinear
    from training.policy_gradient import policy_gradient_step, setup_run

    config = grpo_config(tmp_path, max_steps=1)
    state, _ = setup_run(config, None)
    layer = state.policy.model.layers[0].mlp.gate_proj
    seen = []

    def record(module, args):
        if torch.is_grad_enabled():  # the update, not the rollout's passes
            seen.append((type(module), module.engine_mode,
                         any("forward" in vars(m) for m in state.policy.modules())))

    hook = layer.register_forward_pre_hook(record)
    try:
        assert policy_gradient_step(config, ESTIMATOR, state, lambda: False) is not None
    finally:
        hook.remove()
    assert seen and all(kind is EngineLinear and mode is not None and mode.in_place
                        and not replaced for kind, mode, replaced in seen)
    assert all("engine_mode" not in vars(m) for m in state.policy.modules())
