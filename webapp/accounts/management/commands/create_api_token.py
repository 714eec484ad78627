from django.core.management.base import BaseCommand

from webapp.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create USERNAME if needed and print a new API token on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="a label for the token")

    def handle(self, *args, username: str, name: str, **options):
        user, raw = api_token_create(username=username, name=name)
        self.stdout.write(f"Token for {user.get_username()} (shown once, keep it secret):")
        self.stdout.write(raw)
