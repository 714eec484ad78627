"""The engine's own sampling loop and its shared-prompt log-probs give the numbers of the plain
way of computing them (tiny-llama, CPU)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.training_helpers import TINY_LLAMA, one_torch_thread, tiny_model, tiny_tokenizer
from training.decode import sample, sample_next
from training.logprobs import completion_logprobs
from training.rollout import generate
from training.runtime import decode_linears, onednn_linears


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


EOS = 2
PROMPTS = ["Summarize: the committee met for four hours and then agreed to meet again.", "Hi"]


def _encoded():
    enc = tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def test_the_draw_keeps_only_the_nucleus_in_its_proportions():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    torch.manual_seed(0)

    drawn = sample_next(logits, 1.0, top_p=0.7)  # 0.5 < 0.7 keeps token 1; 0.8 drops token 2

    counts = torch.bincount(drawn, minlength=4).tolist()
    assert counts[2] == counts[3] == 0
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)


def test_the_draw_follows_the_tempered_distribution():
    logits = torch.tensor([[0.0, 1.0]]).expand(4000, 2)
    torch.manual_seed(0)

    drawn = sample_next(logits, 0.5, top_p=1.0)

    expected = torch.softmax(torch.tensor([0.0, 2.0]), dim=0)[1].item()  # logits / 0.5
    assert drawn.float().mean().item() == pytest.approx(expected, abs=0.03)


def test_at_a_near_zero_temperature_the_loop_picks_what_greedy_generate_picks():
    ids, mask = _encoded()  # the second prompt is left-padded
    with torch.no_grad():
        greedy = tiny_model().generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                       max_new_tokens=6, min_new_tokens=6,
                                       pad_token_id=EOS, eos_token_id=EOS)[:, ids.shape[1]:]

    ours, stopped = sample(tiny_model(), ids, mask, group_size=2, max_new_tokens=6,
                           temperature=1e-4, top_p=1.0, eos=[EOS], pad_id=EOS, min_new_tokens=6)

    assert not stopped
    assert torch.equal(ours, greedy.repeat_interleave(2, dim=0))


def test_no_completion_ends_before_min_new_tokens():
    torch.manual_seed(0)
    rollout = generate(tiny_model(), tiny_tokenizer(), PROMPTS, group_size=3, max_new_tokens=7,
                       temperature=1.0, top_p=1.0, max_prompt_tokens=64, min_new_tokens=7)

    assert rollout.completion_lengths.tolist() == [7] * 6
    assert rollout.truncated.all()


def _grouped_batch():
    """Each prompt twice, with different completions; the first completion ends early."""
    ids, mask = _encoded()
    completions = torch.tensor([[100, 200, EOS, EOS], [300, 400, 500, 600],
                                [700, 800, 900, 1000], [110, 120, 130, 140]])  # (4, T)
    action = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    input_ids = torch.cat([ids.repeat_interleave(2, 0), completions], dim=1)
    attention = torch.cat([mask.repeat_interleave(2, 0), action], dim=1)
    return input_ids, attention, ids.shape[1]


def test_sharing_a_groups_prompt_gives_the_same_logprobs_entropy_and_gradient():
    model = tiny_model()
    input_ids, attention, prompt_len = _grouped_batch()
    weight = model.get_input_embeddings().weight  # tied with the head: every path reaches it
    results = []
    weight.requires_grad_(True)
    try:
        for share in (True, False):
            logprobs, entropy = completion_logprobs(model, input_ids, attention, prompt_len,
                                                    0.7, with_entropy=True, share_prompts=share)
            (logprobs * attention[:, prompt_len:]).sum().backward()
            results.append((logprobs.detach(), entropy, weight.grad.clone()))
            weight.grad = None
    finally:
        weight.requires_grad_(False)
    (shared, shared_entropy, shared_grad), (alone, alone_entropy, alone_grad) = results
    assert torch.allclose(shared, alone, atol=1e-5)
    assert torch.allclose(shared_entropy, alone_entropy, atol=1e-5)
    assert torch.allclose(shared_grad, alone_grad, atol=1e-5)
    assert shared_grad.abs().sum() > 0


def test_onednn_linears_give_the_same_outputs_and_are_undone_afterwards():
    model = tiny_model()
    ids, mask = _encoded()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with onednn_linears(model, only_if_faster=False):
            fast = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(plain, fast, atol=1e-4)
    assert all("forward" not in vars(m) for m in model.modules())


def test_onednn_linears_give_the_same_gradients():
    """Under autograd the oneDNN linears (forward and both backward products, widening
    layers and the LM head included) give F.linear's loss and gradients."""
    from training.modelhub import load_causal_lm

    model = load_causal_lm(TINY_LLAMA, dtype=torch.float32, device=torch.device("cpu"))
    ids, mask = _encoded()

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.log_softmax(logits, dim=-1)[..., 3].mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain = loss_and_grads()
    with onednn_linears(model, only_if_faster=False):
        fast_loss, fast = loss_and_grads()
    assert torch.allclose(plain_loss, fast_loss, atol=1e-5)
    assert len(plain) == len(fast) and all(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, fast, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_onednn_takes_only_the_layers_it_was_measured_faster_for(monkeypatch):
    """Which kernel is faster depends on the CPU and the layer's shape: each shape is timed
    once, and only the layers whose shape oneDNN won are switched."""
    import training.runtime

    model = tiny_model()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    won = linears[0].weight.shape[::-1]  # (in, out) of one shape
    monkeypatch.setattr(training.runtime, "onednn_is_faster", lambda i, o: (i, o) == won)
    with onednn_linears(model):
        switched = [m for m in linears if "forward" in vars(m)]
    assert switched and len(switched) < len(linears) or not torch.backends.mkldnn.is_available()
    assert all((m.in_features, m.out_features) == won for m in switched)
    monkeypatch.undo()
    rng = torch.get_rng_state()
    assert isinstance(training.runtime.onednn_is_faster(8, 9), bool)  # the real probe runs
    assert torch.equal(torch.get_rng_state(), rng)  # and leaves a run's random stream alone


def test_decode_linears_give_the_same_outputs_and_are_undone_afterwards():
    """The weights laid out once for few-row products multiply as the plain ones do, for the
    row count they were laid out for and any other (the prompt's prefill)."""
    model = tiny_model()
    ids, mask = _encoded()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with decode_linears(model, rows=8):
            assert all("forward" in vars(m) for m in model.modules()
                       if type(m) is torch.nn.Linear) or not torch.backends.mkldnn.is_available()
            fast = model(input_ids=ids, attention_mask=mask).logits
            one = model(input_ids=ids[:1, -1:], attention_mask=mask[:1, -1:]).logits
    assert torch.allclose(plain, fast, atol=1e-4)
    assert one.shape == (1, 1, plain.shape[-1])
    assert all("forward" not in vars(m) for m in model.modules())


def test_a_decode_loop_reuses_its_freed_memory_instead_of_faulting_pages_in():
    """With freed memory handed back to the system, every 1 MB temporary of a loop (under the
    2 MB where huge pages start) costs 256 fresh page faults; inside ``reuse_freed_memory``
    the heap serves them again. In a fresh process: what earlier tests left in this one's
    heap would serve the loop either way."""
    code = """if True:
        import resource, torch
        from training import runtime
        from training.runtime import reuse_freed_memory
        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(50):
                torch.ones(256 * 1024).sum()  # 1 MB, allocated, touched and freed
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert runtime.return_freed_memory_to_the_os(), "glibc took no mmap threshold"
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
        from training import runtime
        page = os.sysconf("SC_PAGE_SIZE")
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
        def phase():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            with runtime.reuse_freed_memory(runtime.KEPT_REUSE_BYTES, keep=True):
                live = [torch.ones(256 * 1024) for _ in range(200)]  # 200 x 1 MB
                del live
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert runtime.return_freed_memory_to_the_os(), "glibc took no mmap threshold"
        first, second = phase(), phase()
        kept = rss()
        runtime.release_freed_memory()
        print(first, second, round(kept - rss()), phase())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    first, second, released_mb, after_release = map(int, out)
    assert first > 200 * 200  # 256 fresh 4 kB pages a block
    assert second < first / 20
    assert released_mb > 150
    assert after_release > 200 * 200


def test_importing_the_engine_turns_on_huge_pages_for_torch_where_the_kernel_has_them():
    code = "import training, os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
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
