"""ASGI entry point (``make run`` and production serve this with uvicorn under gunicorn).

Live event streams (``/api/runs/{id}/events``) are answered here directly by an async
endpoint: a viewer costs a coroutine and a Redis connection, not a thread, and never waits
behind Django's sync middleware. Everything else is Django.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_application = get_asgi_application()

from webapp.runs.sse import EVENTS_PATH, asgi_run_events  # noqa: E402  (needs the app set up)


async def application(scope, receive, send):
    if scope["type"] == "http":
        match = EVENTS_PATH.fullmatch(scope["path"])
        if match:
            await asgi_run_events(scope, receive, send, int(match[1]))
            return
    await django_application(scope, receive, send)
