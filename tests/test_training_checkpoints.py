"""Checkpoint directories that plain transformers loads, the resume state, and the download
archive: safetensors and JSON only, never pickle."""
from __future__ import annotations

import copy
import hashlib
import json
import zipfile

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training_helpers import (
    files_with_pickle_suffix,
    one_torch_thread,
    tiny_model,
    tiny_tokenizer,
)
from training.checkpoints import (
    MANIFEST,
    STATE_DIR,
    archive_folder,
    load_training_state,
    make_archive,
    restore_optimizer,
    save_model_dir,
    save_training_state,
    sha256_file,
)
from training.runtime import rng_state


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def model_dir(tmp_path):
    return save_model_dir(tiny_model(), tiny_tokenizer(), tmp_path / "step-3",
                          {"algorithm": "grpo", "step": 3})


def _trained_adamw(seed: int = 0):
    """A small model and an AdamW that has taken 3 steps (so every state entry is set)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95),
                                  weight_decay=0.1)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_a_saved_model_dir_loads_with_plain_transformers_and_gives_the_same_logits(model_dir):
    loaded = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer("Summarize: the cat sat on the mat.", return_tensors="pt")["input_ids"]

    with torch.no_grad():
        expected = tiny_model()(input_ids=ids).logits
        actual = loaded.eval()(input_ids=ids).logits

    assert torch.equal(actual, expected)
    assert tokenizer.chat_template == tiny_tokenizer().chat_template
    assert (model_dir / "model.safetensors").is_file()


def test_the_manifest_keeps_the_given_fields_and_the_sha256_of_every_file(model_dir):
    manifest = json.loads((model_dir / MANIFEST).read_text())

    assert manifest["algorithm"] == "grpo" and manifest["step"] == 3
    on_disk = {p.name for p in model_dir.iterdir() if p.is_file() and p.name != MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= on_disk
    for name, digest in manifest["files"].items():
        assert digest == hashlib.sha256((model_dir / name).read_bytes()).hexdigest()


def test_sha256_file_reads_in_chunks(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10_000 + b"y")

    assert sha256_file(path, chunk=7) == hashlib.sha256(b"x" * 10_000 + b"y").hexdigest()


def test_training_state_round_trips_an_adamw_state_exactly(tmp_path):
    model, optimizer = _trained_adamw()
    rng = rng_state()
    save_training_state(tmp_path, optimizer=optimizer, rng=rng,
                        state={"step": 3, "sampler": {"epoch": 1, "position": 2}})

    saved = load_training_state(tmp_path)
    twin = copy.deepcopy(model)
    restored = torch.optim.AdamW(twin.parameters(), lr=1.0)
    restore_optimizer(restored, saved)

    assert saved["step"] == 3 and saved["sampler"] == {"epoch": 1, "position": 2}
    assert saved["adapter"] is None
    assert torch.equal(saved["rng"]["torch"], rng["torch"])
    original, copied = optimizer.state_dict(), restored.state_dict()
    assert original["state"].keys() == copied["state"].keys()
    for idx, entry in original["state"].items():
        assert entry.keys() == copied["state"][idx].keys()
        for name, value in entry.items():
            assert torch.equal(copied["state"][idx][name], value), (idx, name)
    copied_group = copied["param_groups"][0]
    assert copied_group["lr"] == 1e-2 and copied_group["weight_decay"] == 0.1
    assert tuple(copied_group["betas"]) == (0.8, 0.95)

    # and the next update is bit-for-bit the one the original optimizer makes
    torch.manual_seed(9)
    batch = torch.randn(5, 4)
    for net, opt in ((model, optimizer), (twin, restored)):
        net(batch).pow(2).sum().backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_state_keeps_a_lora_adapter(tmp_path):
    _, optimizer = _trained_adamw()
    adapter = {"base_model.model.q_proj.lora_A.weight": torch.randn(2, 8)}

    save_training_state(tmp_path, optimizer=optimizer, rng=rng_state(), adapter=adapter,
                        state={"step": 1})

    saved = load_training_state(tmp_path)
    assert saved["adapter"].keys() == adapter.keys()
    assert torch.equal(saved["adapter"]["base_model.model.q_proj.lora_A.weight"],
                       adapter["base_model.model.q_proj.lora_A.weight"])


def test_a_checkpoint_holds_no_pickle_files(model_dir):
    _, optimizer = _trained_adamw()
    save_training_state(model_dir, optimizer=optimizer, rng=rng_state(), state={"step": 3},
                        adapter={"a": torch.ones(2)})

    assert files_with_pickle_suffix(model_dir) == []
    assert sorted(p.name for p in (model_dir / STATE_DIR).iterdir()) == [
        "adapter.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]


def test_the_archive_zips_the_model_dir_without_its_training_state(model_dir, tmp_path):
    _, optimizer = _trained_adamw()
    save_training_state(model_dir, optimizer=optimizer, rng=rng_state(), state={"step": 3})
    archive = tmp_path / "downloads" / "run-1-step-3.zip"

    size, digest = make_archive(model_dir, archive)

    assert size == archive.stat().st_size
    assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert not archive.with_suffix(".zip.tmp").exists()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        zf.extractall(tmp_path / "unpacked")
    model_files = {p.name for p in model_dir.iterdir() if p.is_file()}
    assert set(names) == {f"step-3/{name}" for name in model_files}
    assert not any(STATE_DIR in name for name in names)
    assert files_with_pickle_suffix(tmp_path / "unpacked") == []


def test_the_archive_folder_names_the_run_and_step_so_downloads_do_not_collide(tmp_path):
    first = save_model_dir(tiny_model(), tiny_tokenizer(),
                           tmp_path / "run-7" / "attempt-1" / "step-3", {"step": 3})
    second = save_model_dir(tiny_model(), tiny_tokenizer(),
                            tmp_path / "run-12" / "attempt-2" / "step-3", {"step": 3})
    assert archive_folder(first) == "run-7-step-3"
    assert archive_folder(second) == "run-12-step-3"
    for model_dir in (first, second):
        make_archive(model_dir, model_dir.with_suffix(".zip"))
        with zipfile.ZipFile(model_dir.with_suffix(".zip")) as zf:
            zf.extractall(tmp_path / "downloads")
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "run-12-step-3", "run-7-step-3"]


def test_the_unpacked_archive_loads_with_plain_transformers(model_dir, tmp_path):
    archive = tmp_path / "step-3.zip"
    make_archive(model_dir, archive)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unpacked")

    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "unpacked" / "step-3"))
    AutoTokenizer.from_pretrained(str(tmp_path / "unpacked" / "step-3"))

    reference = tiny_model().state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, reference[name]), name
