from django import forms
from django.contrib import admin
from django.utils.html import escape

from accounts.models import Team
from audit.services import AuditAction, audit_record
from jobs.services.jobs import connection_save

from .models import Connection, Job, JobTransition, RetentionPolicy


class ConnectionAdminForm(forms.ModelForm):
    # The admin writes help texts unescaped: the example's <placeholders> are escaped here so that they show.
    base_url = forms.URLField(
        max_length=500, assume_scheme="https", help_text=escape(Connection._meta.get_field("base_url").help_text)
    )
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Write-only. Leave empty to keep the stored password.",
    )
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Granted to teams",
        help_text=Connection._meta.get_field("teams").help_text,
    )

    class Meta:
        model = Connection
        fields = [
            "name",
            "base_url",
            "api_version",
            "username",
            "password",
            "poll_budget",
            "poll_strategy",
            "is_default",
            "teams",
        ]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("password"):
            self.add_error("password", "A new connection needs a password.")
        return cleaned


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionAdminForm
    list_display = ["name", "base_url", "api_version", "username", "poll_budget", "is_default", "granted_to"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("teams")

    @admin.display(description="Granted to")
    def granted_to(self, obj: Connection) -> str:
        return ", ".join(team.name for team in obj.teams.all()) or "no team (administrators only)"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        # The form's own instance is saved, so that the admin's redirect and log name the stored row.
        saved = connection_save(
            connection=obj,
            name=data["name"],
            base_url=data["base_url"],
            username=data["username"],
            password=data.get("password") or None,
            api_version=data["api_version"],
            poll_budget=data["poll_budget"],
            poll_strategy=data["poll_strategy"],
            is_default=data["is_default"],
            teams=data["teams"],
        )
        # Field names only: the password's value never enters the trail.
        audit_record(
            action=AuditAction.CONNECTION_CHANGED if change else AuditAction.CONNECTION_CREATED,
            request=request,
            target_type="connection",
            target_id=str(saved.pk),
            details={
                "name": saved.name,
                "base_url": saved.base_url,
                "changed": sorted(form.changed_data),
                "teams": sorted(team.name for team in data["teams"]),
            },
        )

    def save_related(self, request, form, formsets, change):
        # connection_save has already set the grants; the form's save_m2m would only set them again.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TransitionInline(admin.TabularInline):
    model = JobTransition
    extra = 0
    can_delete = False
    fields = ["at", "from_state", "to_state", "reason", "http_status", "latency_ms"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["uuid", "owner", "kind", "script_name", "state", "created_at", "finished_at"]
    list_filter = ["state", "kind"]
    search_fields = ["=uuid", "=oml_job_id", "script_name"]
    list_select_related = ["owner"]
    inlines = [TransitionInline]


@admin.register(JobTransition)
class JobTransitionAdmin(ReadOnlyAdmin):
    list_display = ["job", "from_state", "to_state", "at", "reason", "http_status"]
    list_select_related = ["job"]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    """A team's retention; every change (and removal, back to the defaults) is audited."""

    list_display = ["team", "result_days", "job_days", "updated_at"]
    list_select_related = ["team"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            action=AuditAction.RETENTION_CHANGED,
            request=request,
            target_type="team",
            target_id=str(obj.team_id),
            details={
                "team": obj.team.name,
                "result_days": obj.result_days,
                "job_days": obj.job_days,
                "changed": sorted(form.changed_data),
            },
        )

    def delete_model(self, request, obj):
        details = {"team": obj.team.name, "result_days": None, "job_days": None, "removed": True}
        super().delete_model(request, obj)
        audit_record(
            action=AuditAction.RETENTION_CHANGED,
            request=request,
            target_type="team",
            target_id=str(obj.team_id),
            details=details,
        )

    def delete_queryset(self, request, queryset):
        for policy in queryset.select_related("team"):
            self.delete_model(request, policy)
