"""The training passes' layers (a backend's ``training_pass``, training/layers.py) add each
weight gradient straight into ``.grad``: the gradients are autograd's own, over several
micro-batches, in one tensor per weight that is added to in place (tiny-llama and a small
hand-made model, CPU)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from tests.training_helpers import TINY_LLAMA, one_torch_thread, tiny_tokenizer
from training.backend import CpuBackend
from training.config import EngineSwitches
from training.modelhub import load_causal_lm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(params=["blas", "onednn"])
def kernel(request):
    """Both forward kernels of a trained fp32 Linear: torch's BLAS, and oneDNN (the pinned CPU
    torch has it; the choice is otherwise a per-shape probe's)."""
    assert torch.backends.mkldnn.is_available() or request.param == "blas"
    return request.param


def training_layers(model, kernel):
    """The CPU backend's training pass, every fp32 layer on ``kernel``."""
    onednn = "always" if kernel == "onednn" else "never"
    return CpuBackend(torch.device("cpu"), EngineSwitches(onednn=onednn)).training_pass(model)


def _grads_over_micro_batches(model, batches, loss_fn, layers):
    """Loss of each micro-batch backward in turn (gradients summed in ``.grad``), under
    ``layers``; the gradients, each one's storage after each micro-batch, and the bytes the
    last backward allocated (torch's profiler: the positive balance of each op)."""
    model.zero_grad(set_to_none=True)
    storage = []
    with layers:
        for batch in batches:
            loss = loss_fn(model, batch)
            with torch.profiler.profile(profile_memory=True) as profiler:
                loss.backward()
            storage.append({n: p.grad.data_ptr() for n, p in model.named_parameters()
                            if p.grad is not None})
    allocated = sum(max(0, e.self_cpu_memory_usage) for e in profiler.events())
    return {n: p.grad for n, p in model.named_parameters()}, storage, allocated


def test_tied_llama_gradients_are_autograds_and_accumulate_in_place(kernel):
    model = load_causal_lm(TINY_LLAMA, dtype=torch.float32, device=torch.device("cpu"))
    frozen = model.model.layers[0].mlp.down_proj.weight.requires_grad_(False)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    enc = tiny_tokenizer()(["Summarize: the committee met for four hours.", "Hi there",
                            "One more row", "and a fourth"], return_tensors="pt", padding=True)
    batches = [(enc["input_ids"][i:i + 2], enc["attention_mask"][i:i + 2]) for i in (0, 2)]

    def loss_fn(m, batch):
        logits = m(input_ids=batch[0], attention_mask=batch[1]).logits
        return torch.log_softmax(logits, dim=-1)[..., 5].mean()

    plain, _, plain_bytes = _grads_over_micro_batches(model, batches, loss_fn,
                                                      contextlib.nullcontext())
    fused, storage, fused_bytes = _grads_over_micro_batches(model, batches, loss_fn,
                                                            training_layers(model, kernel))

    assert plain["model.layers.0.mlp.down_proj.weight"] is None
    assert fused["model.layers.0.mlp.down_proj.weight"] is None and not frozen.requires_grad
    trained = [n for n, g in plain.items() if g is not None]
    assert len(trained) == len(list(model.parameters())) - 1
    for name in trained:
        assert torch.allclose(fused[name], plain[name], atol=1e-6, rtol=1e-4), name
        assert fused[name].abs().sum() > 0
    # every weight's gradient is one tensor, added to in place by the second micro-batch,
    # which allocates no weight-sized gradients to add (autograd's: one per weight and per
    # use, the embedding's a zeroed (vocab, hidden) tensor)
    assert storage[0] == storage[1]
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert plain_bytes - fused_bytes >= weight_bytes
    assert all("forward" not in vars(m) and "engine_mode" not in vars(m)
               for m in model.modules())


def test_embedding_padding_row_and_linear_bias_get_autograds_gradients(kernel):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 6, padding_idx=0),
                                torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3))
    ids = torch.tensor([[0, 3, 3, 7], [5, 0, 10, 3]])  # the padding id, and repeated ids
    batches = [ids[:1], ids[1:]]
    target = torch.randn(3)

    def loss_fn(m, batch):
        return ((m(batch) - target) ** 2).sum()

    plain, _, _ = _grads_over_micro_batches(model, batches, loss_fn, contextlib.nullcontext())
    fused, storage, _ = _grads_over_micro_batches(model, batches, loss_fn,
                                                  training_layers(model, kernel))

    assert set(plain) == set(fused) == {"0.weight", "1.weight", "1.bias", "3.weight", "3.bias"}
    for name, grad in plain.items():
        assert torch.allclose(fused[name], grad, atol=1e-6, rtol=1e-5), name
    assert fused["0.weight"][0].abs().sum() == 0  # the padding row learns nothing
    assert fused["0.weight"][3].abs().sum() > 0
    assert storage[0]["0.weight"] == storage[1]["0.weight"]
    assert storage[0]["1.weight"] == storage[1]["1.weight"]


@pytest.mark.parametrize("tied", [True, False])
def test_embedding_gradients_match_autograd_update_after_update(kernel, tied):
    """An embedding (tied to its LM head, as SmolLM2's, or not, as PPO's critic's) over
    micro-batches, three updates with ``zero_grad(set_to_none=True)`` between: the values
    are autograd's every time, and a gradient someone kept from an update before is left as
    it was by the next ones (the accumulation is in place, so it must start from fresh
    memory)."""
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(4096, 512)
    if tied:  # the LM head writes the gradient first, the embedding adds its rows
        head = torch.nn.Linear(512, 4096, bias=False)
        head.weight = embedding.weight
    else:  # the embedding's zeroed buffer takes it
        head = torch.nn.Linear(512, 3)
    model = torch.nn.Sequential(embedding, head)
    ids = torch.randint(0, 4096, (4, 6))

    def loss_fn(m, batch):
        return torch.log_softmax(m(batch), dim=-1)[..., 1].mean()

    kept = []
    for update in range(3):
        batches = [ids[update % 2::2], ids[1 - update % 2::2]]
        plain, _, _ = _grads_over_micro_batches(model, batches, loss_fn,
                                                contextlib.nullcontext())
        plain = {n: g.clone() for n, g in plain.items()}
        fused, _, _ = _grads_over_micro_batches(model, batches, loss_fn,
                                                training_layers(model, kernel))
        for name, grad in plain.items():
            assert torch.allclose(fused[name], grad, atol=1e-6, rtol=1e-4), (update, name)
        if update == 1:  # held past the next update's zero_grad: not reused, not overwritten
            kept.append((fused["0.weight"], fused["0.weight"].clone()))
        del fused, plain
    held, values = kept[0]
    assert torch.equal(held, values)
