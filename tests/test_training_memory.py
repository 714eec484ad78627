"""Memory options change memory, never the numbers: gradient checkpointing gives the same
losses and gradients as keeping every activation."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.training_helpers import grpo_config, one_torch_thread, rm_config
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
    from tests.training_helpers import ppo_config
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


# --- micro-batches from the activation budget ---

TINY_SHAPE = SimpleNamespace(num_hidden_layers=2, hidden_size=4, intermediate_size=8,
                             vocab_size=10)


def test_the_activation_estimate_counts_each_groups_prompt_once():
    from training.memory import activation_bytes

    estimate = activation_bytes(TINY_SHAPE, rows=4, prompt_tokens=3, completion_tokens=5,
                                group_size=2, param_bytes=4, checkpointing=False)

    # per token and layer (10 x 4 + 4 x 8) x 4 bytes = 288; 2 layers: 576 per token;
    # 2 prompts x 3 + 4 rows x 5 = 26 tokens; float32 logits twice: 2 x 4 x 5 x 10 x 4 = 1600
    assert estimate == 576 * 26 + 1600


def test_the_micro_batch_is_the_largest_split_that_fits_the_budget():
    from training.memory import MB, activation_bytes, auto_micro_batch

    shape = {"model_config": TINY_SHAPE, "prompt_tokens": 3, "completion_tokens": 5,
             "group_size": 1, "param_bytes": 4, "checkpointing": False}
    three_rows = activation_bytes(rows=3, **shape)

    assert auto_micro_batch(12, three_rows / MB, **shape) == 3  # 4 and 6 do not fit
    assert auto_micro_batch(12, 1e6, **shape) == 12
    assert auto_micro_batch(12, 1e-9, **shape) == 1  # never less than one row


def test_the_default_budget_splits_smollm2s_default_step_and_keeps_a_group_whole():
    """SmolLM2's default step (4 groups of 8) is split into micro-batches of 4 rows: 8 would
    need the accumulated gradients beside a whole group's activations. One group of 8 (the
    TRL benchmark's step) runs in one pass, where no gradient is held beside them."""
    from training.algorithms.grpo import GRPOConfig
    from training.memory import auto_micro_batch

    smollm2 = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                              vocab_size=49152)
    defaults = GRPOConfig()
    shape = {"model_config": smollm2, "prompt_tokens": 56,
             "completion_tokens": defaults.max_new_tokens, "group_size": defaults.group_size,
             "param_bytes": 4, "checkpointing": False, "grad_bytes": 134_515_008 * 4}

    assert auto_micro_batch(defaults.completions_per_step, defaults.activation_memory_mb,
                            **shape) == 4
    assert auto_micro_batch(8, defaults.activation_memory_mb, **shape) == 8


def test_accumulated_gradients_count_only_when_the_step_is_split():
    from training.memory import MB, activation_bytes, auto_micro_batch

    shape = {"model_config": TINY_SHAPE, "prompt_tokens": 3, "completion_tokens": 5,
             "group_size": 1, "param_bytes": 4, "checkpointing": False}
    whole = activation_bytes(rows=4, **shape)
    half = activation_bytes(rows=2, **shape)

    assert auto_micro_batch(4, whole / MB, grad_bytes=10 * whole, **shape) == 4
    assert auto_micro_batch(4, (half + 100) / MB, grad_bytes=100, **shape) == 2
    assert auto_micro_batch(4, (half + 99) / MB, grad_bytes=100, **shape) == 1


def test_where_nothing_fits_the_split_needing_least_is_taken_not_one_row():
    """PPO's two networks: a minibatch of 4 SmolLM2 rows needs about 1.47 GB of activations,
    over the 1152 MB budget, but every split would hold both networks' 1.08 GB of gradients
    beside its rows (1 row: 1.44 GB, 2 rows: 1.78 GB): no split saves a tenth, so the one
    pass is taken, as fast as it gets for the same memory."""
    from training.algorithms.ppo import PPOConfig
    from training.memory import MB, activation_bytes, auto_micro_batch

    smollm2 = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                              vocab_size=49152)
    shape = {"model_config": smollm2, "prompt_tokens": 56, "completion_tokens": 64,
             "group_size": 1, "param_bytes": 4, "checkpointing": False, "trunks": 2}
    grads = 2 * 134_515_008 * 4
    budget = PPOConfig().activation_memory_mb
    assert activation_bytes(rows=4, **shape) > budget * MB
    one_row = activation_bytes(rows=1, **shape) + grads
    assert activation_bytes(rows=4, **shape) < 1.1 * one_row

    assert auto_micro_batch(4, budget, grad_bytes=grads, **shape) == 4
    # with half those gradients one row fits the budget, and is taken
    assert auto_micro_batch(4, budget, grad_bytes=0.5 * grads, **shape) == 1
    # with small gradients (LoRA) a split does fit, and the largest fitting one is taken
    assert auto_micro_batch(4, budget, grad_bytes=10 * MB, **shape) == 2


def test_the_inference_estimate_counts_one_layer_every_cache_and_the_head_chunks():
    from training.memory import inference_bytes

    estimate = inference_bytes(TINY_SHAPE, rows=2, prompt_tokens=3, completion_tokens=5,
                               param_bytes=4, head_chunk_bytes=100)

    # 2 rows x 8 tokens = 16; one layer (10 x 4 + 4 x 8) x 4 bytes x 16 = 4608; keys and
    # values 2 x 2 layers x 4 x 4 bytes x 16 = 1024; scores 2 rows x 1 head x 8 x 8 x 4 = 512
    assert estimate == 4608 + 1024 + 512 + 2 * 100


def test_the_default_budget_runs_smollm2s_frozen_passes_over_the_whole_step():
    from training.algorithms.grpo import GRPOConfig
    from training.logprobs import CHUNK_ELEMENTS
    from training.memory import inference_bytes, largest_split

    smollm2 = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                              vocab_size=49152, num_attention_heads=9, num_key_value_heads=3)
    defaults = GRPOConfig()
    total = defaults.completions_per_step

    rows = largest_split(total, defaults.activation_memory_mb, lambda r: inference_bytes(
        smollm2, rows=r, prompt_tokens=56, completion_tokens=defaults.max_new_tokens,
        param_bytes=4, head_chunk_bytes=CHUNK_ELEMENTS * 4))

    assert rows == total == 32
