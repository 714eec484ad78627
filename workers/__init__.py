"""Celery tasks: the only bridge between the web app's rows and the training engine."""
