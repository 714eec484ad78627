"""Runs and what they produce: per-step metrics, sample completions and checkpoints.

A run's writes all name the attempt that made them (``Run.attempt``); services refuse a write
whose attempt is not the run's current one, so a stale worker cannot corrupt a newer attempt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models

from training.algorithms import AlgorithmSpec, algorithm_choices, get_algorithm


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # The worker stopped sending heartbeats; a new attempt will resume the run.
    CRASHED = "crashed", "Crashed"
    # Stopped on purpose (a worker shutting down) after a checkpoint; waiting for a worker.
    RESUMING = "resuming", "Resuming"


TERMINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# A worker may claim a run in these: a new run, or one whose last attempt ended unfinished.
CLAIMABLE_STATUSES = (RunStatus.QUEUED, RunStatus.CRASHED, RunStatus.RESUMING)


class Run(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="runs")
    name = models.CharField(max_length=200)
    # Choices come from the algorithms' declarations: a new algorithm needs no migration.
    algorithm = models.CharField(max_length=20, choices=algorithm_choices)
    status = models.CharField(max_length=20, choices=RunStatus.choices,
                              default=RunStatus.QUEUED, db_index=True)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.PROTECT,
                                related_name="runs")
    base_model = models.CharField(max_length=200, help_text="registry id of the start model")
    # Lineage: the checkpoint this run started from, when its base model is one.
    parent_checkpoint = models.ForeignKey("runs.Checkpoint", null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="children")
    rewards = models.JSONField(default=list)
    hyperparameters = models.JSONField(default=dict)
    step = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Set when the worker running it is shutting down: stop, checkpoint, go back to the queue.
    interrupt_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=200, blank=True, help_text="the queued task")
    crashes = models.PositiveIntegerField(default=0)
    notes = models.TextField(blank=True, help_text="the owner's notes on the run")

    # The summary the runs list and the compare page show, kept up to date as steps arrive
    # (services.run_record_step) so listing runs never scans their metrics.
    reward_final = models.FloatField(null=True, blank=True)
    reward_best = models.FloatField(null=True, blank=True)
    kl_final = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True,
                                     help_text="completion tokens over training seconds")
    peak_mem_mb = models.FloatField(null=True, blank=True)
    wall_s = models.FloatField(null=True, blank=True, help_text="seconds from start to end")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0

    @property
    def spec(self) -> AlgorithmSpec | None:
        """The declaration of the run's algorithm (None for one no longer declared)."""
        return get_algorithm(self.algorithm)

    @property
    def produces_reward_model(self) -> bool:
        spec = self.spec
        return spec is not None and spec.produces == "reward"

    @property
    def tags(self) -> list[str]:
        """The run's tags by name (prefetch ``tag_rows`` when listing runs)."""
        return [t.name for t in self.tag_rows.all()]


class RunTag(models.Model):
    """A label the owner puts on a run to find and compare it with others (as W&B tags); a
    row per tag so the runs list filters by one on every database."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tag_rows")
    name = models.CharField(max_length=40)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"],
                                               name="runtag_unique_run_name")]
        indexes = [models.Index(fields=["name", "run"], name="runtag_name_run")]


class Metric(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    key = models.CharField(max_length=100)
    value = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step", "key"],
                                               name="metric_unique_run_step_key")]
        # (run, step) reads are served by the unique index; one series by this one.
        indexes = [models.Index(fields=["run", "key", "step"], name="metric_run_key_step")]


class MetricBlock(models.Model):
    """The lowest, highest, first and last point of one metric over a block of ``width``
    steps (``start`` to ``start + width - 1``), for widths 4, 8, 16, ... (see
    :mod:`webapp.runs.series`). Blocks are built in the database as steps arrive, so a
    downsampled chart of a long run reads one block per bucket instead of every row."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_blocks")
    key = models.CharField(max_length=100)
    width = models.PositiveIntegerField()
    start = models.PositiveIntegerField()
    min_step = models.PositiveIntegerField()
    min_value = models.FloatField()
    max_step = models.PositiveIntegerField()
    max_value = models.FloatField()
    first_step = models.PositiveIntegerField()
    first_value = models.FloatField()
    last_step = models.PositiveIntegerField()
    last_value = models.FloatField()

    class Meta:
        # (run, width, start): a request reads every block of one width in step order.
        constraints = [models.UniqueConstraint(fields=["run", "width", "start", "key"],
                                               name="metricblock_unique_run_width_start_key")]


class AttemptOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    CRASHED = "crashed", "Crashed"
    INTERRUPTED = "interrupted", "Interrupted"


class RunAttempt(models.Model):
    """One claim of a run by a worker: who, when, how it ended, and the step it resumed
    from (None when it started from scratch)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    attempt = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=AttemptOutcome.choices,
                               default=AttemptOutcome.RUNNING)
    resumed_from_step = models.PositiveIntegerField(null=True, blank=True)
    task_id = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="the worker process")

    class Meta:
        ordering = ["run", "attempt"]
        constraints = [models.UniqueConstraint(fields=["run", "attempt"],
                                               name="runattempt_unique_run_attempt")]


class Sample(models.Model):
    """A completion kept for the samples table of the run page."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="samples")
    step = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    prompt = models.TextField()
    completion = models.TextField()
    rewards = models.JSONField(default=dict)
    reward = models.FloatField()
    advantage = models.FloatField()
    # A reward model's held-out pair shows its rejected response beside the chosen one.
    rejected = models.TextField(blank=True)

    class Meta:
        ordering = ["step", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "index"],
                                               name="sample_unique_run_step_index")]


class Checkpoint(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    # Relative to settings.CHECKPOINTS_DIR; a save_pretrained directory.
    path = models.CharField(max_length=300)
    # The zip users download, made once when the checkpoint is recorded; size and sha256 are
    # the archive's, so a downloaded file can be checked against the listing.
    archive = models.CharField(max_length=300)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"],
                                               name="checkpoint_unique_run_step")]

    @property
    def directory(self) -> Path:
        return Path(settings.CHECKPOINTS_DIR) / self.path

    @property
    def archive_path(self) -> Path:
        return Path(settings.CHECKPOINTS_DIR) / self.archive

    @property
    def model_id(self) -> str:
        return f"ckpt-{self.pk}"

    @property
    def disk(self) -> Any:
        """Bytes on disk (``.weights``, ``.training_state``, ``.archive``, ``.total``); read
        from the files each time (:func:`webapp.runs.checkpoints.checkpoint_disk_usage`)."""
        from webapp.runs.checkpoints import checkpoint_disk_usage

        return checkpoint_disk_usage(self)


class RegisteredModel(models.Model):
    """A model directory a staff user registered in the page or the API (``source: local``,
    beside the ones the RLHF_LOCAL_MODELS setting lists), offered to every user. Stored only
    once the directory passed :func:`training.model_files.inspect_model_dir`."""

    model_id = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=1000)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                      on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id"]


class DownloadStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DOWNLOADING = "downloading", "Downloading"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_DOWNLOADS = (DownloadStatus.QUEUED, DownloadStatus.DOWNLOADING)


class ModelDownload(models.Model):
    """A hub model a person asked for, downloaded by a worker into the shared Hugging Face
    cache (safetensors, config and tokenizer files only); it is listed as ``hf:<repo_id>`` once
    ready. One active download per repository."""

    repo_id = models.CharField(max_length=200)
    revision = models.CharField(max_length=100, default="main")
    status = models.CharField(max_length=20, choices=DownloadStatus.choices,
                              default=DownloadStatus.QUEUED)
    commit = models.CharField(max_length=64, blank=True)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                     on_delete=models.SET_NULL, related_name="+")
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(
            fields=["repo_id"], condition=models.Q(status__in=["queued", "downloading"]),
            name="one_active_download_per_repo")]

    @property
    def model_id(self) -> str:
        return f"hf:{self.repo_id}"

    @property
    def progress(self) -> float:
        if self.status == DownloadStatus.READY:
            return 1.0
        if not self.bytes_total:
            return 0.0
        return min(1.0, self.bytes_done / self.bytes_total)
