"""What a model directory holds, read from its files without loading it (no torch): whether the
engine may load it, and its card (architecture, size, precision, context, vocabulary, chat
template, bytes on disk).

The engine loads safetensors only and never runs a repository's own code, so a directory with
only pickle weights (``pytorch_model.bin``) or with ``auto_map`` (remote code) is refused here,
with the reason, before anyone picks it. Parameter counts and the stored precision come from
the safetensors headers (the JSON before the tensors), so a card costs a few kilobytes of
reading whatever the model's size.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth",
                  "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on a header
MAX_JSON_BYTES = 20 * 1024 * 1024  # config, index and tokenizer_config files are far smaller
MAX_FILES = 10_000
DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64",
          "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I8": "int8", "U8": "uint8"}
# configs name the context length differently per family
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class Refused(ValueError):
    """The directory is not a model the engine may load; ``reason`` is a short code
    (``not_a_model``, ``pickle_weights``, ``remote_code``, ``no_tokenizer``, ``unsupported``),
    the message says why and what to do."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ModelCard:
    architecture: str
    model_type: str
    kind: str  # policy (causal LM) | reward (one-output classifier) | encoder
    parameters: int
    dtype: str
    context_length: int | None
    vocab_size: int | None
    chat_template: bool
    disk_bytes: int
    hidden_size: int | None = None
    layers: int | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise Refused("not_a_model", f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MB")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused("not_a_model", f"{path.name} is not valid JSON ({exc})") from exc


def read_config(folder: str | Path) -> dict[str, Any]:
    """The directory's ``config.json`` as a dict (bounded in size; :class:`Refused` if
    missing or not a JSON object)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise Refused("not_a_model", f"no config.json in {folder}")
    config = _read_json(path)
    if not isinstance(config, dict):
        raise Refused("not_a_model", "config.json is not a JSON object")
    return config


def _header(path: Path) -> dict[str, Any]:
    """A safetensors file's header: tensor name -> {dtype, shape, data_offsets}."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise Refused("not_a_model", f"{path.name} is not a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > min(MAX_HEADER_BYTES, path.stat().st_size):
            raise Refused("not_a_model", f"{path.name} is not a safetensors file")
        try:
            header = json.loads(fh.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused("not_a_model", f"{path.name} has a broken header") from exc
    if not isinstance(header, dict):
        raise Refused("not_a_model", f"{path.name} has a broken header")
    header.pop("__metadata__", None)
    return header


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights (one, or the shards an index names); raises
    :class:`Refused` when there are none, saying whether pickle weights are why."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise Refused("not_a_model", f"{SAFETENSORS_INDEX} names no weights")
        names = sorted({str(v) for v in weight_map.values()})
        shards = [folder / n for n in names]
        bad = [n for n, p in zip(names, shards, strict=True)
               if Path(n).name != n or not p.is_file()]
        if bad:
            raise Refused("not_a_model", f"shard {bad[0]} named by {SAFETENSORS_INDEX} is missing")
        return shards
    if (folder / SAFETENSORS).is_file():
        return [folder / SAFETENSORS]
    pickled = [n for n in PICKLE_WEIGHTS if (folder / n).exists()]
    if pickled:
        raise Refused("pickle_weights", f"the weights are in {pickled[0]}, a pickle format that "
                      "can run code when loaded; convert them to safetensors (transformers' "
                      "save_pretrained(safe_serialization=True)) and register that directory")
    raise Refused("not_a_model", f"no {SAFETENSORS} (or {SAFETENSORS_INDEX}) in {folder}")


def _kind(architecture: str, config: dict[str, Any]) -> str:
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return "policy"
    if architecture.endswith("ForSequenceClassification"):
        labels = len(config.get("id2label") or {}) or 2  # transformers' default: two labels
        if labels != 1:
            raise Refused("unsupported", f"{architecture} with {labels} labels is a "
                          "classifier, not a reward model (one output)")
        return "reward"
    if architecture.endswith("Model") and "For" not in architecture:
        return "encoder"
    raise Refused("unsupported", f"{architecture} is neither a causal LM, a one-output "
                  "sequence classifier nor an encoder")


def _disk_bytes(folder: Path) -> int:
    total, seen = 0, 0
    for root, _, files in os.walk(folder):
        for name in files:
            seen += 1
            if seen > MAX_FILES:
                return total
            try:
                total += (Path(root) / name).stat().st_size  # follows the cache's symlinks
            except OSError:
                continue
    return total


def _has_chat_template(folder: Path) -> bool:
    if any((folder / n).is_file() for n in CHAT_TEMPLATE_FILES):
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(_read_json(config).get("chat_template"))


def inspect_model_dir(folder: str | Path) -> ModelCard:
    """The card of the model in ``folder``; raises :class:`Refused` when the engine may not
    load it (no config, no safetensors weights, pickle weights only, remote code, no
    tokenizer for a causal LM, an architecture it cannot train)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Refused("not_a_model", f"{folder} is not a directory")
    if not (folder / "config.json").is_file():
        raise Refused("not_a_model", f"no config.json in {folder}: not a Hugging Face model "
                      "directory")
    config = read_config(folder)
    tokenizer_config = folder / "tokenizer_config.json"
    if "auto_map" in config or (tokenizer_config.is_file()
                                and "auto_map" in _read_json(tokenizer_config)):
        raise Refused("remote_code", "the model declares auto_map: it needs the repository's own "
                      "Python code (trust_remote_code), which this server never runs")
    architectures = config.get("architectures") or []
    if not architectures or not isinstance(architectures[0], str):
        raise Refused("not_a_model", "config.json names no architecture")
    kind = _kind(architectures[0], config)
    files = weight_files(folder)
    if kind == "policy" and not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise Refused("no_tokenizer", f"no tokenizer in {folder} (tokenizer.json or the files "
                      "of a slow tokenizer); save the tokenizer beside the weights")
    counts: Counter[str] = Counter()
    for path in files:
        for tensor in _header(path).values():
            counts[str(tensor.get("dtype"))] += math.prod(int(d) for d in tensor.get("shape", []))
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    context = next((int(text[k]) for k in CONTEXT_KEYS if isinstance(text.get(k), int)), None)
    dtype = counts.most_common(1)[0][0] if counts else "unknown"
    return ModelCard(
        architecture=architectures[0], model_type=str(config.get("model_type", "")), kind=kind,
        parameters=sum(counts.values()), dtype=DTYPES.get(dtype, dtype.lower()),
        context_length=context, vocab_size=text.get("vocab_size"),
        chat_template=_has_chat_template(folder), disk_bytes=_disk_bytes(folder),
        hidden_size=text.get("hidden_size"), layers=text.get("num_hidden_layers"))
