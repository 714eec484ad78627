"""The Django project: pages, the JSON API, and the services behind both. It hands work to
the Celery workers by task name (:mod:`webapp.queueing`) and never imports ``workers``."""
