"""Admin for teams, memberships, profiles and tokens. Every change of who may see what is audited."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from jobs.audit import AuditAction, audit_record

from .models import ApiToken, Membership, Profile, Team

User = get_user_model()


def _membership_details(membership: Membership, **extra) -> dict:
    return {"user": membership.user.get_username(), "team": membership.team.name, "role": membership.role, **extra}


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


def _audit_membership_formset(request, formset) -> None:
    """Audit the role changes a saved membership formset made (call after formset.save())."""
    for membership in formset.new_objects:
        audit_record(
            action=AuditAction.ROLE_ADDED,
            request=request,
            target_type="membership",
            target_id=str(membership.pk),
            details=_membership_details(membership),
        )
    for membership, changed in formset.changed_objects:
        audit_record(
            action=AuditAction.ROLE_CHANGED,
            request=request,
            target_type="membership",
            target_id=str(membership.pk),
            details=_membership_details(membership, changed=sorted(changed)),
        )
    for membership in formset.deleted_objects:
        audit_record(
            action=AuditAction.ROLE_REMOVED,
            request=request,
            target_type="membership",
            target_id="",
            details=_membership_details(membership),
        )


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "shares_history", "created_at"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or form.changed_data:
            audit_record(
                action=AuditAction.TEAM_CHANGED if change else AuditAction.TEAM_CREATED,
                request=request,
                target_type="team",
                target_id=str(obj.pk),
                details={"team": obj.name, "shares_history": obj.shares_history, "changed": sorted(form.changed_data)},
            )

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            _audit_membership_formset(request, formset)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]
    list_select_related = ["user", "team"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or form.changed_data:
            audit_record(
                action=AuditAction.ROLE_CHANGED if change else AuditAction.ROLE_ADDED,
                request=request,
                target_type="membership",
                target_id=str(obj.pk),
                details=_membership_details(obj, changed=sorted(form.changed_data)),
            )

    def delete_model(self, request, obj):
        details = _membership_details(obj)
        target_id = str(obj.pk)
        super().delete_model(request, obj)
        audit_record(
            action=AuditAction.ROLE_REMOVED,
            request=request,
            target_type="membership",
            target_id=target_id,
            details=details,
        )

    def delete_queryset(self, request, queryset):
        removed = [(str(m.pk), _membership_details(m)) for m in queryset.select_related("user", "team")]
        super().delete_queryset(request, queryset)
        for target_id, details in removed:
            audit_record(
                action=AuditAction.ROLE_REMOVED,
                request=request,
                target_type="membership",
                target_id=target_id,
                details=details,
            )


# The fields of a user whose change alters what the user may do; the password is never named with a value.
_USER_POWER_FIELDS = {"is_active", "is_staff", "is_superuser", "groups", "user_permissions"}

admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = sorted(set(form.changed_data) - {"password", "password1", "password2"})
        if not change or set(changed) & _USER_POWER_FIELDS:
            audit_record(
                action=AuditAction.USER_CHANGED if change else AuditAction.USER_CREATED,
                request=request,
                target_type="user",
                target_id=str(obj.pk),
                details={
                    "user": obj.get_username(),
                    "changed": changed,
                    "is_active": obj.is_active,
                    "is_staff": obj.is_staff,
                    "is_superuser": obj.is_superuser,
                },
            )

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            _audit_membership_formset(request, formset)


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "timezone"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "prefix", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["scope"]
    readonly_fields = ["user", "name", "prefix", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoking keeps the token's history; deleting would lose it.
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        from .tokens import token_revoke

        revoked = sum(token_revoke(token=token, request=request) for token in queryset.select_related("user"))
        self.message_user(request, f"Revoked {revoked} token(s).")
