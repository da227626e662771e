from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from classify.auth import issue_token
from classify.models import ApiToken, Project


class Command(BaseCommand):
    help = "Print a new API token for a user (use it as 'Authorization: Token <token>')."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--revoke-all", action="store_true", help="Revoke the user's tokens instead")
        parser.add_argument("--name", default="", help="What the token is for")
        parser.add_argument("--project", default="", help="Slug: the token sees only this project")
        parser.add_argument("--read-only", action="store_true", help="GET and HEAD only")
        parser.add_argument("--expires-days", type=int, default=None, help="Refused after this many days")

    def handle(self, *args, username: str, revoke_all: bool, name: str, project: str, read_only: bool,
               expires_days: int | None, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user called {username!r}")
        if revoke_all:
            count, _ = ApiToken.objects.filter(user=user).delete()
            self.stdout.write(f"Revoked {count} token(s) of {username}.")
            return
        scope = Project.objects.filter(slug=project).first() if project else None
        if project and scope is None:
            raise CommandError(f"no project {project!r}")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            self.stdout.write(issue_token(user, name=name, project=scope, read_only=read_only, expires_at=expires_at))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
