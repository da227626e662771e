from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account if there is none, and say how to log in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("LOUPE_ADMIN_USER", "admin"))

    def handle(self, *args, username: str, **options) -> None:
        users = get_user_model().objects
        password_file = settings.VAR_DIR / "admin_password"
        if users.filter(is_superuser=True).exists():
            hint = f" (first password in {password_file})" if password_file.exists() else ""
            self.stdout.write(f"Admin account exists: log in as {users.filter(is_superuser=True).first()}{hint}.")
            return
        password = os.environ.get("LOUPE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Created admin account: username {username}, password {password}"))
        self.stdout.write(f"(also saved in {password_file}; change it in the admin)")
