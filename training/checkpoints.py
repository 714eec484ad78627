"""Checkpoints in safetensors with a manifest, and the training state needed to resume.

Layout of ``<output_dir>/step-<n>/``::

    config.json, generation_config.json, model.safetensors   (loads with from_pretrained)
    tokenizer files, chat template
    manifest.json          step, algorithm, the run's config, sha256 of every model file
    training_state/        optimizer.safetensors, state.json (step, sampler, ...), rng.safetensors,
                           adapter.safetensors (LoRA runs only). Not part of the download.

Nothing here uses pickle: tensors go through safetensors, everything else through JSON.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

STATE_DIR = "training_state"
MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def plain_model(model: Any) -> PreTrainedModel:
    """The model as plain transformers weights: a LoRA model is merged into a copy."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def save_model_dir(model: Any, tokenizer: Any, dest: Path, manifest: dict[str, Any]) -> Path:
    """Write a directory that ``AutoModelForCausalLM.from_pretrained`` loads as it is."""
    dest.mkdir(parents=True, exist_ok=True)
    plain_model(model).save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    files = {p.name: sha256_file(p) for p in sorted(dest.iterdir())
             if p.is_file() and p.name != MANIFEST}
    (dest / MANIFEST).write_text(json.dumps({**manifest, "files": files}, indent=2,
                                            default=str))
    return dest


def _flatten_optimizer(optimizer: torch.optim.Optimizer
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().contiguous()
                if value.untyped_storage().nbytes() != value.nbytes:  # a view of a flat buffer
                    value = value.clone()  # (runtime.flat_moments): safetensors saves whole
                tensors[f"{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_training_state(dest: Path, *, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], rng: dict[str, torch.Tensor],
                        adapter: dict[str, torch.Tensor] | None = None) -> None:
    folder = dest / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = _flatten_optimizer(optimizer)
    save_file(tensors, str(folder / "optimizer.safetensors"))
    save_file({k: v.contiguous() for k, v in rng.items()}, str(folder / "rng.safetensors"))
    if adapter is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in adapter.items()},
                  str(folder / "adapter.safetensors"))
    (folder / "state.json").write_text(json.dumps({**state, "optimizer": meta}))


def load_training_state(src: Path) -> dict[str, Any]:
    """Everything :func:`save_training_state` wrote, tensors on the CPU."""
    folder = src / STATE_DIR
    state = json.loads((folder / "state.json").read_text())
    state["rng"] = load_file(str(folder / "rng.safetensors"))
    state["optimizer_tensors"] = load_file(str(folder / "optimizer.safetensors"))
    adapter = folder / "adapter.safetensors"
    state["adapter"] = load_file(str(adapter)) if adapter.exists() else None
    return state


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    meta, tensors = saved["optimizer"], saved["optimizer_tensors"]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entries in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


_RUN_DIR = re.compile(r"run-\d+")


def archive_folder(model_dir: Path) -> str:
    """The zip's top folder: ``run-<id>-step-<n>`` for a checkpoint in a run's directory
    (``.../run-<id>/attempt-<a>/step-<n>``), so downloads of two runs (or two steps) never
    unpack onto each other; else the directory's own name."""
    for parent in model_dir.parents:
        if _RUN_DIR.fullmatch(parent.name):
            return f"{parent.name}-{model_dir.name}"
    return model_dir.name


def make_archive(model_dir: Path, archive: Path, *, folder: str | None = None
                 ) -> tuple[int, str]:
    """Zip the model directory (not its training state) as ``<folder>/...`` (default:
    :func:`archive_folder`); returns the archive's size and sha256. Stored, not deflated:
    safetensors barely compress."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    top = folder or archive_folder(model_dir)
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir)
            if path.is_file() and rel.parts[0] != STATE_DIR:
                zf.write(path, Path(top) / rel)
    tmp.rename(archive)
    return archive.stat().st_size, sha256_file(archive)


def save_checkpoint_dir(dest: Path, *, model: Any, tokenizer: Any, manifest: dict[str, Any],
                        optimizer: torch.optim.Optimizer, lora: bool,
                        state: dict[str, Any], rng: dict[str, torch.Tensor]) -> Path:
    """A whole checkpoint: the plain model directory and, beside it, what resuming needs
    (the LoRA adapter on its own when ``lora``, since the model directory holds it merged).
    Written under a temporary name and renamed when complete, so ``dest`` is either whole or
    absent: a process killed while saving leaves no half checkpoint to resume from."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_dir(model, tokenizer, tmp, manifest)
    adapter = None
    if lora:
        from peft import get_peft_model_state_dict

        adapter = get_peft_model_state_dict(model)
    save_training_state(tmp, optimizer=optimizer, state=state, rng=rng, adapter=adapter)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
