"""Uploaded datasets. The validated rows are stored once, normalised, as a JSONL file that
workers read without Django (``Dataset.file_path``)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class DatasetKind(models.TextChoices):
    PROMPTS = "prompts", "Prompts"
    PREFERENCES = "preferences", "Preference pairs"
    RANKINGS = "rankings", "Ranked lists"


class Dataset(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="datasets")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=DatasetKind.choices)
    rows = models.PositiveIntegerField()
    columns = models.JSONField(default=list)
    preview = models.JSONField(default=list)
    # Relative to settings.DATASETS_DIR: one JSON object per line, the normalised rows.
    file = models.CharField(max_length=300)
    original_filename = models.CharField(max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # The labeling batch whose rankings made this dataset, when one did.
    source_batch = models.ForeignKey("labeling.Batch", null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="datasets")
    # For a dataset made from a batch: a digest of the rankings it holds, so the same
    # rankings reuse it instead of making another copy ("Fit a reward model" twice).
    source_rankings = models.CharField(max_length=64, blank=True)
    # Made by the playground for one prompt; not listed with the datasets people upload.
    hidden = models.BooleanField(default=False)
    # Read from the Hugging Face hub: {"hub_id", "config", "split", "revision", "columns"}.
    origin = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def file_path(self) -> Path:
        return Path(settings.DATASETS_DIR) / self.file
