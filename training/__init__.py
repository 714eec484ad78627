"""The training engine: plain PyTorch and transformers, no Django, no Celery.

Entry points take a frozen config dataclass from :mod:`training.config`, report through a
:class:`training.metrics.MetricsSink`, and poll a ``should_stop`` callable for cancellation.
"""
