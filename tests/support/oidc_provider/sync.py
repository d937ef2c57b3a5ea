"""Make the provider's users, their groups and its clients those the test run sends:

{"users": [{"username": "alice", "password": "...", "email": "...", "groups": ["omlpy-risk-analysts"]}],
 "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["http://.../oidc/callback/"]}]}

Users and clients not named are left alone; a named user's groups become exactly the listed ones.
"""

import hmac
import json
import os

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.models import get_application_model


@transaction.atomic
def sync(data: dict) -> None:
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


@csrf_exempt
@require_POST
def sync_view(request):
    """The test run's door to `sync`, open only to the holder of the token it started the provider with
    (a request over loopback costs far less than a management command's start)."""
    if not hmac.compare_digest(request.headers.get("X-Sync-Token", ""), os.environ["IDP_SYNC_TOKEN"]):
        return HttpResponseForbidden("wrong sync token")
    sync(json.loads(request.body))
    return HttpResponse(status=204)
