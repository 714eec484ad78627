"""A model directory read from its files without loading it: the card's numbers from the
safetensors headers, and every directory the engine may not load refused with its reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from training.model_files import Refused, inspect_model_dir


def _model_dir(folder: Path, *, architecture: str = "LlamaForCausalLM", config: dict | None = None,
               tensors: dict[str, torch.Tensor] | None = None, tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": [architecture], "model_type": "llama", "vocab_size": 7,
        "max_position_embeddings": 128, "hidden_size": 4, "num_hidden_layers": 1,
        **(config or {})}))
    save_file(tensors if tensors is not None else {
        "a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.bfloat16)},
        str(folder / "model.safetensors"))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    return folder


def test_the_card_counts_parameters_and_precision_from_the_headers(tmp_path):
    folder = _model_dir(tmp_path / "m")

    card = inspect_model_dir(folder)

    assert (card.kind, card.parameters, card.dtype) == ("policy", 3 * 4 + 5, "float32")
    assert (card.context_length, card.vocab_size, card.chat_template) == (128, 7, True)
    assert card.disk_bytes == sum(p.stat().st_size for p in folder.iterdir())


def test_shards_named_by_the_index_are_all_counted(tmp_path):
    folder = _model_dir(tmp_path / "m", tensors={"a": torch.zeros(2, 2, dtype=torch.bfloat16)})
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(10, dtype=torch.bfloat16)},
              str(folder / "model-00002-of-00002.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))

    card = inspect_model_dir(folder)

    assert (card.parameters, card.dtype) == (14, "bfloat16")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(Refused, match="missing"):
        inspect_model_dir(folder)


@pytest.mark.parametrize("architecture, config, kind", [
    ("LlamaForSequenceClassification", {"id2label": {"0": "LABEL_0"}}, "reward"),
    ("BertModel", {"model_type": "bert"}, "encoder"),
    ("GPTNeoXForCausalLM", {}, "policy"),
    ("GPT2LMHeadModel", {}, "policy"),
])
def test_the_kind_follows_the_architecture(tmp_path, architecture, config, kind):
    assert inspect_model_dir(_model_dir(tmp_path / "m", architecture=architecture,
                                        config=config)).kind == kind


def _pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _remote_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "x.Y"}}))


def _remote_tokenizer(folder: Path) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": "x"}}))


def _no_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()


def _no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def _broken_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)


def _three_labels(folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForSequenceClassification"],
        "id2label": {"0": "a", "1": "b", "2": "c"}}))


def _multimodal(folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["Gemma3ForConditionalGeneration"]}))


@pytest.mark.parametrize("change, reason, words", [
    (_pickle_only, "pickle_weights", "pytorch_model.bin"),
    (_remote_code, "remote_code", "trust_remote_code"),
    (_remote_tokenizer, "remote_code", "auto_map"),
    (_no_tokenizer, "no_tokenizer", "tokenizer"),
    (_no_config, "not_a_model", "config.json"),
    (_broken_weights, "not_a_model", "safetensors"),
    (_three_labels, "unsupported", "3 labels"),
    (_multimodal, "unsupported", "Gemma3ForConditionalGeneration"),
])
def test_what_the_engine_may_not_load_is_refused_with_its_reason(tmp_path, change, reason,
                                                                words):
    folder = _model_dir(tmp_path / "m")
    change(folder)

    with pytest.raises(Refused) as refused:
        inspect_model_dir(folder)

    assert refused.value.reason == reason
    assert words in str(refused.value)
