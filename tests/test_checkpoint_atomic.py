"""A checkpoint is written under a temporary name and renamed when complete: a process killed
while saving leaves no half checkpoint that a resume would read."""
from __future__ import annotations

import pytest
import torch

from tests.training_helpers import tiny_model, tiny_tokenizer
from training import checkpoints


def _save(dest, model, tokenizer):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return checkpoints.save_checkpoint_dir(
        dest, model=model, tokenizer=tokenizer, manifest={"step": 1}, optimizer=optimizer,
        lora=False, state={"step": 1}, rng={"cpu": torch.get_rng_state()})


def test_a_save_that_dies_halfway_leaves_nothing_under_the_checkpoints_name(tmp_path,
                                                                          monkeypatch):
    model, tokenizer = tiny_model(), tiny_tokenizer()
    dest = tmp_path / "step-1"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("the process dies while writing the training state")

    monkeypatch.setattr(checkpoints, "save_training_state", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(dest, model, tokenizer)
    assert not dest.exists()
    monkeypatch.undo()
    _save(dest, model, tokenizer)  # the next save replaces the leftover temporary directory
    assert (dest / "model.safetensors").exists()
    assert checkpoints.load_training_state(dest)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step-1"]
