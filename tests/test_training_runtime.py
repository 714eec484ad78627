"""The machine-dependent runtime (training/backend.py and what it steers: training/layers.py,
training/kernels.py, training/heap.py, training/runtime.py, training/process.py): oneDNN
kernels giving the same numbers as torch's own and undone afterwards, no module's forward
replaced, the heap's reuse of freed memory, freed tensors handed back, weights out of the file
mapping, AdamW's flat moments, and the huge-pages switch a training process sets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training_helpers import (
    TINY_LLAMA,
    encoded_prompts,
    one_torch_thread,
    tiny_model,
)
from training.backend import Backend, CpuBackend, backend_for
from training.config import EngineSwitches
from training.layers import EngineLinear

CPU = torch.device("cpu")
ONEDNN = CpuBackend(CPU, EngineSwitches(onednn="always"))  # every fp32 layer, for the tests
needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                  reason="this torch build has no oneDNN")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def _untouched(model) -> bool:
    """No module's forward replaced, and no layer left with a mode after a pass."""
    return all("forward" not in vars(m) and "engine_mode" not in vars(m)
               and "engine_in_place" not in vars(m) for m in model.modules())


def test_the_backend_is_chosen_by_device():
    assert type(backend_for(CPU)) is CpuBackend
    assert type(backend_for(torch.device("cuda"))) is Backend  # plain torch; no GPU needed
    assert backend_for(CPU, EngineSwitches(onednn="never")).switches.onednn == "never"


@needs_onednn
def test_onednn_layers_give_the_same_outputs_and_are_undone_afterwards():
    model = tiny_model()
    ids, mask = encoded_prompts()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
    with ONEDNN.frozen_pass(model):
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m) is EngineLinear and m.engine_mode.onednn
                               for m in linears)
        fast = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(plain, fast, atol=1e-4)
    assert _untouched(model)


@needs_onednn
@pytest.mark.parametrize("in_place", [True, False], ids=["in_place", "autograd"])
def test_onednn_layers_give_the_same_gradients(in_place):
    """Under autograd the oneDNN layers (forward and both backward products, widening layers
    and the LM head included) give F.linear's loss and gradients, whether the weight
    gradients are added in place or handed to autograd."""
    from training.modelhub import load_causal_lm

    model = load_causal_lm(TINY_LLAMA, dtype=torch.float32, device=CPU)
    ids, mask = encoded_prompts()

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.log_softmax(logits, dim=-1)[..., 3].mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain = loss_and_grads()
    backend = CpuBackend(CPU, EngineSwitches(onednn="always", in_place_gradients=in_place))
    with backend.training_pass(model) as plan:
        fast_loss, fast = loss_and_grads()
    assert plan.head_onednn and plan.head_in_place == in_place
    assert torch.allclose(plain_loss, fast_loss, atol=1e-5)
    assert len(plain) == len(fast) and all(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, fast, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert _untouched(model)


def test_onednn_takes_only_the_layers_it_was_measured_faster_for(monkeypatch):
    """Which kernel is faster depends on the CPU and the layer's shape: each shape is timed
    once, and only the layers whose shape oneDNN won are switched."""
    import training.backend
    import training.kernels

    model = tiny_model()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    won = linears[0].weight.shape[::-1]  # (in, out) of one shape
    monkeypatch.setattr(training.backend, "onednn_is_faster", lambda i, o: (i, o) == won)
    with CpuBackend(CPU).frozen_pass(model):
        switched = [m for m in linears if m.engine_mode is not None]
    assert switched and len(switched) < len(linears) or not torch.backends.mkldnn.is_available()
    assert all((m.in_features, m.out_features) == won for m in switched)
    with CpuBackend(CPU, EngineSwitches(onednn="never")).frozen_pass(model):
        assert all(m.engine_mode is None for m in linears)
    with Backend(CPU).frozen_pass(model):  # plain torch: the CPU's kernels are its own
        assert all(m.engine_mode is None for m in linears)
    monkeypatch.undo()
    rng = torch.get_rng_state()
    assert isinstance(training.kernels.onednn_is_faster(8, 9), bool)  # the real probe runs
    assert torch.equal(torch.get_rng_state(), rng)  # and leaves a run's random stream alone


@needs_onednn
def test_decode_layers_give_the_same_outputs_and_are_undone_afterwards():
    """The weights laid out once for few-row products multiply as the plain ones do, for the
    row count they were laid out for and any other (the prompt's prefill)."""
    model = tiny_model()
    ids, mask = encoded_prompts()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with CpuBackend(CPU).decoding(model, rows=8, lean=False):
            assert all(m.engine_mode.packed is not None for m in model.modules()
                       if isinstance(m, torch.nn.Linear))
            fast = model(input_ids=ids, attention_mask=mask).logits
            one = model(input_ids=ids[:1, -1:], attention_mask=mask[:1, -1:]).logits
        with CpuBackend(CPU).decoding(model, rows=8, lean=True):  # lays its own weights out
            assert _untouched(model)
    assert torch.allclose(plain, fast, atol=1e-4)
    assert one.shape == (1, 1, plain.shape[-1])
    assert _untouched(model)


def test_a_decode_loop_reuses_its_freed_memory_instead_of_faulting_pages_in():
    """With freed memory handed back to the system, every 1 MB temporary of a loop (under the
    2 MB where huge pages start) costs 256 fresh page faults; inside ``reuse_freed_memory``
    the heap serves them again. In a fresh process: what earlier tests left in this one's
    heap would serve the loop either way."""
    code = """if True:
        import resource, torch
        from training import heap
        from training.heap import reuse_freed_memory
        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(50):
                torch.ones(256 * 1024).sum()  # 1 MB, allocated, touched and freed
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert heap.return_freed_memory_to_the_os(), "glibc took no mmap threshold"
        faults()
        outside = faults()
        with reuse_freed_memory():
            inside = faults()
        print(outside, inside, faults())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    outside, inside, after = map(int, out)
    assert outside > 50 * 200 and after > 50 * 200  # memory goes back to the system
    assert inside < outside / 5


def test_a_kept_heap_serves_the_next_steps_blocks_until_it_is_released():
    """With ``keep``, what a phase freed stays in the heap on the way out, so the next step's
    same phase (here: 200 live 1 MB blocks, as a training pass's saved activations) faults in
    no fresh pages; ``release_freed_memory`` hands it back (the resident set drops), after
    which the same phase faults them in again. In a fresh process, as above."""
    code = """if True:
        import os, resource, torch
        from training import heap
        page = os.sysconf("SC_PAGE_SIZE")
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
        def phase():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            with heap.reuse_freed_memory(heap.KEPT_REUSE_BYTES, keep=True):
                live = [torch.ones(256 * 1024) for _ in range(200)]  # 200 x 1 MB
                del live
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert heap.return_freed_memory_to_the_os(), "glibc took no mmap threshold"
        first, second = phase(), phase()
        kept = rss()
        heap.release_freed_memory()
        print(first, second, round(kept - rss()), phase())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    first, second, released_mb, after_release = map(int, out)
    assert first > 200 * 200  # 256 fresh 4 kB pages a block
    assert second < first / 20
    assert released_mb > 150
    assert after_release > 200 * 200


def test_a_training_process_turns_on_huge_pages_for_torch_where_the_kernel_has_them():
    plain = ("import training, training.algorithms, os; "
             "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    untouched = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True,
                               check=True, env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    assert untouched == "None"  # importing the engine changes nothing
    code = ("from training.process import prefer_huge_pages; import os; prefer_huge_pages(); "
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    try:
        available = "[never]" not in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        available = False
    assert out == ("1" if available else "None")
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin",
                                           "THP_MEM_ALLOC_ENABLE": "0"}).stdout.strip()
    assert kept == "0"  # a user's own setting stands


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting (Linux)")
def test_freed_tensors_go_back_to_the_system():
    """After the engine's malloc setting, freeing large tensors between live ones lowers the
    resident set; with glibc's own dynamic threshold they stay in the heap (0 MB returned,
    checked by hand). In a fresh process: the setting is once per process."""
    code = """
import os, torch
from training.heap import return_freed_memory_to_the_os
assert return_freed_memory_to_the_os()
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
for _ in range(3):  # what raises glibc's own threshold to 32 MB
    torch.ones(2**23).sum()
blocks = [torch.ones(2**16) for _ in range(2000)]  # 2000 x 256 kB = 500 MB
during = rss()
del blocks[::2]  # every other one: a heap could not shrink past the live ones
print(round(during - rss()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert int(out.stdout) > 200, out.stdout  # of the 250 MB freed


def test_trained_weights_leave_the_files_mapping_so_the_first_update_faults_no_pages():
    """transformers maps a safetensors file copy-on-write: the first write to each weight
    page faults and copies it (about one fault per 4 kB of weights). After
    ``weights_in_own_memory`` the weights live in the process's own, already touched memory;
    tied weights stay one parameter. In a fresh process, so the counts are its own."""
    code = """
import resource, torch
from tests.training_helpers import TINY_LLAMA
from training.modelhub import load_causal_lm
from training.runtime import weights_in_own_memory
def write_faults(model):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
load = lambda: load_causal_lm(TINY_LLAMA, dtype=torch.float32, device=torch.device("cpu"))
mapped, own = load(), weights_in_own_memory(load())
tied = own.get_input_embeddings().weight is own.get_output_embeddings().weight
size = sum(p.numel() * 4 for p in own.parameters())
print(write_faults(mapped), write_faults(own), size // 4096, tied)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    mapped, own, pages, tied = out.stdout.split()
    assert int(mapped) > int(pages) / 2  # copy-on-write: a fault per page written
    assert int(own) < int(pages) / 20
    assert tied == "True"


def test_adamws_moments_in_flat_buffers_give_the_plain_optimizers_updates():
    """The CPU backend's AdamW makes the two moments before the first step as views of one
    buffer each (huge pages instead of a page fault per 4 kB on the first step); the updates
    are the plain fused AdamW's to the bit, and a checkpoint of its state saves and
    restores."""
    from training.checkpoints import load_training_state, restore_optimizer, save_training_state

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)) for _ in "ab"]
    nets[1].load_state_dict(nets[0].state_dict())
    plain = torch.optim.AdamW(nets[0].parameters(), lr=1e-2, weight_decay=0.0, fused=True)
    ours = CpuBackend(CPU).optimizer(nets[1].parameters(), lr=1e-2)
    moments = [ours.state[p]["exp_avg"] for p in nets[1].parameters()]
    assert len({m.untyped_storage().data_ptr() for m in moments}) == 1  # one buffer
    for _ in range(3):
        x = torch.randn(5, 8)
        for net, optimizer in zip(nets, (plain, ours), strict=True):
            optimizer.zero_grad(set_to_none=True)
            net(x).square().sum().backward()
            optimizer.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        save_training_state(Path(tmp), optimizer=ours, state={}, rng={})
        fresh = CpuBackend(CPU).optimizer(nets[1].parameters(), lr=1e-2)
        restore_optimizer(fresh, load_training_state(Path(tmp)))
    for p in nets[1].parameters():
        assert torch.equal(fresh.state[p]["exp_avg_sq"], ours.state[p]["exp_avg_sq"])
