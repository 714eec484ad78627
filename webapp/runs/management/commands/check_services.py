"""Say clearly which service is missing before anything starts."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection


class Command(BaseCommand):
    help = "Check that the database and Redis are reachable."

    def handle(self, *args, **options):
        problems = []
        try:
            connection.ensure_connection()
        except Exception as exc:
            engine = settings.DATABASES["default"]["ENGINE"]
            problems.append(f"The database is unreachable ({engine}): {exc}\n  Start "
                            "PostgreSQL, fix DATABASE_URL, or unset it to use "
                            "SQLite under var/. 'docker compose up -d db redis' brings both.")
        try:
            from webapp.runs.events import client

            client().ping()
        except Exception as exc:
            problems.append(f"Redis is unreachable at {settings.REDIS_URL}: {exc}\n  Start it "
                            "('redis-server --daemonize yes' or 'docker compose up -d redis') "
                            "or set REDIS_URL.")
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write("database and Redis are reachable")
