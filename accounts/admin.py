"""Admin for teams, memberships, profiles, tokens and sign-in locks. Every change of who may see what, and
every lifted sign-in lock, is audited."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from audit.services import AuditAction, audit_record

from . import throttling
from .forms import ThrottledAdminAuthenticationForm
from .models import ApiToken, LoginLock, Membership, OidcIdentity, Profile, Team
from .services import user_deactivation_by_admin

User = get_user_model()
# The admin's sign-in page says for how long sign-in is locked, as the site's does.
admin.site.login_form = ThrottledAdminAuthenticationForm


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


def _may_unlock(request) -> bool:
    return request.user.has_perm("accounts.delete_loginlock")


def _report_unlocked(model_admin: admin.ModelAdmin, request, lifted: list[LoginLock]) -> None:
    if lifted:
        model_admin.message_user(request, f"Lifted {len(lifted)} sign-in lock(s): " + "; ".join(map(str, lifted)))
    else:
        model_admin.message_user(request, "No sign-in lock in force matched.")


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    inlines = [MembershipInline]
    actions = ["unlock_sign_in"]

    def has_unlock_permission(self, request) -> bool:
        return _may_unlock(request)

    @admin.action(description="Lift the sign-in locks of the selected users", permissions=["unlock"])
    def unlock_sign_in(self, request, queryset):
        names = [throttling.normalize_username(user.get_username()) for user in queryset]
        locks = throttling.current_locks().filter(username__in=names)
        _report_unlocked(self, request, throttling.login_unlock(locks=locks, request=request, via="admin"))

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
        if change and "is_active" in form.changed_data:
            user_deactivation_by_admin(user=obj, request=request)

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


@admin.register(LoginLock)
class LoginLockAdmin(admin.ModelAdmin):
    """The sign-in locks in force; lifting one is audited. Locks are taken by the throttle, never by hand."""

    list_display = ["scope", "username", "address", "failures", "created_at", "locked_until", "seconds_left"]
    list_filter = ["scope"]
    search_fields = ["username"]
    actions = ["unlock_selected"]

    def get_queryset(self, request):
        return throttling.current_locks()

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # lifting goes through the audited action
        return actions

    @admin.display(description="Seconds left")
    def seconds_left(self, obj: LoginLock) -> int:
        return throttling.remaining_seconds(obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_unlock_permission(self, request) -> bool:
        return _may_unlock(request)

    def delete_model(self, request, obj):
        throttling.login_unlock(locks=[obj], request=request, via="admin")

    def delete_queryset(self, request, queryset):
        throttling.login_unlock(locks=queryset, request=request, via="admin")

    @admin.action(description="Lift the selected sign-in locks", permissions=["unlock"])
    def unlock_selected(self, request, queryset):
        _report_unlocked(self, request, throttling.login_unlock(locks=queryset, request=request, via="admin"))


@admin.register(OidcIdentity)
class OidcIdentityAdmin(admin.ModelAdmin):
    """Read-only: identities are made by sign-ins through the provider."""

    list_display = ["user", "subject", "issuer", "last_sign_in_at", "deactivated_by_claims"]
    readonly_fields = ["user", "issuer", "subject", "created_at", "last_sign_in_at", "deactivated_by_claims"]
    search_fields = ["user__username", "subject"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
