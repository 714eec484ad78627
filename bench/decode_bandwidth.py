"""The decode loop against the memory-bandwidth bound: how much of the bandwidth a decode
step uses, reading every weight and the KV cache once per step.

A decode step of a small batch is bound by memory traffic, not arithmetic: each step reads
all the weights (and each row's keys and values) to produce one token per row. This times
the steps of :func:`training.decode.sample` (the prompt's prefill subtracted: a run of
``--tokens`` steps minus a run of 1), divides the bytes a step must read by that time, and
prints one JSON line with the achieved GB/s and its share of ``--peak-gbs`` (the device's
memory bandwidth: 4800 for an H200's HBM3e; on a CPU pass the measured STREAM-like figure,
by default a large-tensor read measured in the same run).

    .venv/bin/python bench/decode_bandwidth.py --model var/models/smollm2-135m-instruct
    python3 bench/decode_bandwidth.py --device cuda --precision bf16 --peak-gbs 4800

``--model-forward`` runs each step through the model's own forward (the way before
:mod:`training.llama_decode`), ``--unpacked`` also with the weights in their plain layout;
``--lora-rank 16`` decodes a LoRA-wrapped model (the bytes counted are the wrapped model's).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.process import prefer_huge_pages  # noqa: E402

prefer_huge_pages()  # before torch is imported, as a worker's child does
import torch  # noqa: E402

from training.backend import backend_for  # noqa: E402
from training.config import EngineSwitches  # noqa: E402
from training.decode import sample, uses_lean_decoder  # noqa: E402
from training.modelhub import load_causal_lm, load_tokenizer  # noqa: E402
from training.rollout import render_prompt  # noqa: E402
from training.runtime import resolve_dtype, synchronize  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def read_bandwidth_gbs(device: torch.device) -> float:
    """A sum over a 1 GiB tensor: what reading memory costs here, for a CPU's bound."""
    x = torch.ones(2**28, device=device)
    seconds = timed(lambda: x.sum(), device, 5)
    return x.numel() * 4 / seconds / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="var/models/smollm2-135m-instruct")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--rows", type=int, default=8, help="completions decoded together (G)")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--unpacked", action="store_true",
                   help="weights in their plain layout (re-laid out by every product)")
    p.add_argument("--lora-rank", type=int, default=0,
                   help="wrap the model in LoRA adapters of this rank on every linear layer")
    p.add_argument("--model-forward", action="store_true",
                   help="each step through the model's own forward, not training.llama_decode")
    p.add_argument("--peak-gbs", type=float, default=0.0,
                   help="the memory bandwidth bound in GB/s (0: measure a large read)")
    a = p.parse_args()
    device = torch.device(a.device)
    dtype = resolve_dtype(a.precision, device)
    tok = load_tokenizer(a.model)
    model = load_causal_lm(a.model, dtype=dtype, device=device).eval()
    if a.lora_rank:  # as the engine's LoRA runs: all-linear, alpha 2r
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=a.lora_rank, lora_alpha=2 * a.lora_rank, target_modules="all-linear",
            lora_dropout=0.0)).eval()
    text = render_prompt(tok, "Summarize: The cat sat on the mat all day because it was warm "
                         "and sunny outside, and the dog was asleep.", True)
    enc = tok([text], return_tensors="pt", add_special_tokens=False).to(device)

    switches = EngineSwitches(lean_decoder=not (a.model_forward or a.unpacked),
                              packed_decode=not a.unpacked)
    lean = switches.lean_decoder and uses_lean_decoder(model)

    def run(tokens: int) -> None:
        sample(model, enc["input_ids"], enc["attention_mask"], group_size=a.rows,
               max_new_tokens=tokens, temperature=0.8, top_p=1.0, eos=[tok.eos_token_id],
               pad_id=tok.pad_token_id, min_new_tokens=tokens, lean=lean)

    with backend_for(device, switches).decoding(model, rows=a.rows, lean=lean):
        run(2)  # warm-up
        full, prefill = timed(lambda: run(a.tokens), device, a.repeats), \
            timed(lambda: run(1), device, a.repeats)
    step_s = (full - prefill) / (a.tokens - 1)
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    cfg = model.config
    kv_heads = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    mean_len = enc["input_ids"].shape[1] + a.tokens / 2
    kv = 2 * cfg.num_hidden_layers * a.rows * kv_heads * head_dim * mean_len * \
        torch.finfo(dtype).bits // 8
    achieved = (weights + kv) / step_s / 1e9
    peak = a.peak_gbs or read_bandwidth_gbs(device)
    print(json.dumps({
        "bench": "decode_bandwidth", "device": a.device, "precision": a.precision,
        "model": Path(a.model).name, "rows": a.rows, "tokens": a.tokens,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "decode_step_ms": round(step_s * 1e3, 2), "bytes_per_step_mb": round(
            (weights + kv) / 2**20, 1), "achieved_gbs": round(achieved, 1),
        "bound_gbs": round(peak, 1), "share_of_bound": round(achieved / peak, 3),
        "tokens_per_s": round(a.rows / step_s, 1),
    }))


if __name__ == "__main__":
    main()
