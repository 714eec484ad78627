"""The training engine: plain PyTorch and transformers, no Django, no Celery.

Entry points take a frozen config dataclass (:mod:`training.algorithms`), report through a
:class:`training.metrics.MetricsSink`, and poll a ``should_stop`` callable for cancellation.
Importing the package changes nothing in the process; :func:`training.process.prefer_huge_pages`
is for whoever starts a training process.
"""
