"""Make the provider's users, their groups and its clients those of a JSON file:

{"users": [{"username": "alice", "password": "...", "email": "...", "groups": ["omlpy-risk-analysts"]}],
 "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["http://.../oidc/callback/"]}]}

Users and clients not in the file are left alone; a listed user's groups become exactly the listed ones.
"""

import json
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Sync the test provider's users, groups and clients from a JSON file."

    def add_arguments(self, parser):
        parser.add_argument("path")

    @transaction.atomic
    def handle(self, *args, path, **options):
        data = json.loads(Path(path).read_text())
        for entry in data.get("users", []):
            user, _ = User.objects.get_or_create(username=entry["username"])
            user.email = entry.get("email", f"{entry['username']}@example.com")
            user.set_password(entry["password"])
            user.save()
            user.groups.set([Group.objects.get_or_create(name=name)[0] for name in entry.get("groups", [])])
        application_model = get_application_model()
        for entry in data.get("clients", []):
            application = application_model.objects.filter(client_id=entry["client_id"]).first()
            application = application or application_model(client_id=entry["client_id"])
            application.name = entry.get("name", entry["client_id"])
            application.client_type = application_model.CLIENT_CONFIDENTIAL
            application.authorization_grant_type = application_model.GRANT_AUTHORIZATION_CODE
            application.redirect_uris = " ".join(entry["redirect_uris"])
            application.algorithm = application_model.RS256_ALGORITHM
            application.skip_authorization = True
            application.client_secret = entry["client_secret"]
            application.save()
