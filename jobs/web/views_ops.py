"""Pinning a job from its page, and the storage page. Thin: jobs.services.pins writes, jobs.selectors.storage reads."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from jobs.selectors.access import can_pin, can_view_storage, job_for_user, storage_team_ids
from jobs.selectors.storage import storage_summary
from jobs.services.pins import PinError, job_pin, job_unpin


@login_required
@require_POST
def pin(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    if not can_pin(request.user, job):
        raise PermissionDenied("Only the job's owner, its team's leads and auditors, and administrators may pin it.")
    try:
        job_pin(job=job, actor=request.user, reason=request.POST.get("reason", ""), request=request)
    except PinError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Pinned: retention keeps this job and its result until it is unpinned.")
    return redirect("jobs:detail", job_uuid=job.uuid)


@login_required
@require_POST
def unpin(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    if not can_pin(request.user, job):
        raise PermissionDenied("Only the job's owner, its team's leads and auditors, and administrators may unpin it.")
    try:
        job_unpin(job=job, actor=request.user, request=request)
    except PinError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Unpinned: retention applies to this job again.")
    return redirect("jobs:detail", job_uuid=job.uuid)


@login_required
@require_GET
def storage(request):
    if not can_view_storage(request.user):
        raise PermissionDenied("The storage page is for administrators and team leads.")
    context = {
        "summary": storage_summary(team_ids=storage_team_ids(request.user)),
        "purge_interval": settings.RETENTION_PURGE_INTERVAL,
    }
    return render(request, "jobs/storage.html", context)
