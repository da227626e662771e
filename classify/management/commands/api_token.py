from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from classify.auth import issue_token
from classify.models import ApiToken


class Command(BaseCommand):
    help = "Print a new API token for a user (use it as 'Authorization: Token <token>')."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--revoke-all", action="store_true", help="Revoke the user's tokens instead")

    def handle(self, *args, username: str, revoke_all: bool, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user called {username!r}")
        if revoke_all:
            count, _ = ApiToken.objects.filter(user=user).delete()
            self.stdout.write(f"Revoked {count} token(s) of {username}.")
            return
        self.stdout.write(issue_token(user))
