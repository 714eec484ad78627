"""Reading a run's rows and the seeded, resumable prompt order."""
from __future__ import annotations

import json

import pytest

from tests.training_helpers import write_jsonl
from training.data import PromptSampler, read_rows


def test_read_rows_reads_one_object_per_line_and_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b", "answer": "2"}\n  \n', encoding="utf-8")

    assert read_rows(path) == [{"prompt": "a"}, {"prompt": "b", "answer": "2"}]


def test_read_rows_keeps_chat_prompts_and_unicode(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "Grüß dich, 世界"}]}]

    assert read_rows(write_jsonl(tmp_path / "rows.jsonl", rows)) == rows


def test_the_sampler_draws_every_row_once_per_epoch():
    sampler = PromptSampler(7, seed=3)

    epochs = [sampler.next(7) for _ in range(3)]

    for order in epochs:
        assert sorted(order) == list(range(7))
    assert sampler.state() == {"epoch": 2, "position": 7}


def test_the_sampler_crosses_epochs_inside_one_draw():
    sampler = PromptSampler(5, seed=0)

    drawn = sampler.next(4) + sampler.next(4)  # the second draw takes 1 + 3

    assert sorted(drawn[:5]) == list(range(5))
    assert len(set(drawn[5:])) == 3
    assert sampler.state() == {"epoch": 1, "position": 3}


def test_the_sampler_reshuffles_each_epoch():
    sampler = PromptSampler(20, seed=1)

    assert sampler.next(20) != sampler.next(20)


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another():
    first = PromptSampler(20, seed=42).next(50)

    assert PromptSampler(20, seed=42).next(50) == first
    assert PromptSampler(20, seed=43).next(50) != first


@pytest.mark.parametrize("drawn", [0, 3, 9, 10, 25])
def test_a_sampler_loaded_from_a_saved_state_continues_the_same_sequence(drawn):
    original = PromptSampler(10, seed=7)
    original.next(drawn)
    saved = json.loads(json.dumps(original.state()))  # as a checkpoint stores it

    resumed = PromptSampler(10, seed=7)
    resumed.load_state(saved)

    assert resumed.next(30) == original.next(30)


def test_the_sampler_refuses_an_empty_dataset():
    with pytest.raises(ValueError, match="no rows"):
        PromptSampler(0, seed=0)
