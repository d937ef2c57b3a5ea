"""What a sign-in through the identity provider does here, once the provider's answer has been verified.

`sso_sign_in(claims=..., issuer=...)` finds the user of the provider's account, or creates one; checks that
the groups claim grants access (OIDC_REQUIRED_GROUP when set, and at least one entry of OIDC_ROLE_MAP); then
sets the user's memberships and administrator flags to exactly what the claims grant. A user whose claims no
longer grant access is deactivated there and then: memberships removed, sessions ended, API tokens revoked.
Every change is audited, with `"via": "sso"`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import AuditAction, audit_record

from .models import Membership, OidcIdentity, Team
from .role_map import Grants, grants_for, groups_from_claim
from .services import user_access_end

VIA = "sso"


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in through the provider was refused; `message` is shown to the person signing in."""

    reason: str
    message: str
    username: str = ""
    access_ended: bool = False  # the user was deactivated by this sign-in: sessions ended, tokens revoked


@dataclass(frozen=True)
class SignInResult:
    user: object | None = None
    refusal: Refusal | None = None


def _audit(action: str, *, actor, request, target_type="user", target_id="", **details) -> None:
    """An entry whose actor is the user signing in (None before they have an account here)."""
    audit_record(
        action=action,
        actor=actor,
        request=request,
        target_type=target_type,
        target_id=str(target_id or (actor.pk if actor is not None else "")),
        details={"via": VIA, **details},
    )


def _refuse(
    *, request, user, username: str, reason: str, message: str, groups: list[str], access_ended: bool = False
) -> SignInResult:
    _audit(AuditAction.LOGIN_REFUSED, actor=user, request=request, username=username, reason=reason, groups=groups[:50])
    refusal = Refusal(reason=reason, message=message, username=username, access_ended=access_ended)
    return SignInResult(refusal=refusal)


def _grant_problem(grants: Grants, groups: list[str]) -> tuple[str, str] | None:
    required = settings.OIDC_REQUIRED_GROUP
    provider = settings.OIDC_PROVIDER_NAME
    if required and required not in groups:
        return "not in the required group", f"Your account at {provider} is not in the group that may use this site."
    if not grants.any:
        return "no mapped group", f"None of your groups at {provider} grants a role on this site."
    return None


def _find_user(*, issuer: str, subject: str, username: str):
    """The user of this provider account; at its first sign-in, a local user of the same name (linked by the
    caller once the claims grant access).

    Returns (user or None, identity or None, problem or None).
    """
    identity = OidcIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    user = identity.user if identity is not None else get_user_model().objects.filter(username=username).first()
    if user is None:
        return None, None, None
    if settings.BREAK_GLASS_USERNAME and user.get_username() == settings.BREAK_GLASS_USERNAME:
        # The emergency account must not depend on, nor be changed by, the provider.
        return None, None, "the break-glass account never signs in through the provider"
    if identity is not None:
        return user, identity, None
    linked = OidcIdentity.objects.filter(user=user).first()
    if linked is not None and linked.issuer == issuer:
        return None, None, "the user name belongs to another account of the provider"
    return user, linked, None


def _deprovision(*, user, identity: OidcIdentity, request, reason: str) -> bool:
    """The claims no longer grant access: the user loses every role and is deactivated, their access ended.
    True if this deactivated them (False: they already were)."""
    _memberships_set(user=user, wanted={}, request=request)
    _admin_set(user=user, admin=False, request=request)
    if not user.is_active:
        return False
    user.is_active = False
    user.save(update_fields=["is_active"])
    identity.deactivated_by_claims = True
    identity.save(update_fields=["deactivated_by_claims"])
    _audit(AuditAction.USER_DEACTIVATED, actor=user, request=request, user=user.get_username(), reason=reason)
    user_access_end(
        user=user, reason=f"the provider's claims no longer grant access ({reason})", request=request, actor=user
    )
    return True


def _admin_set(*, user, admin: bool, request) -> None:
    if user.is_staff == admin and user.is_superuser == admin:
        return
    user.is_staff = user.is_superuser = admin
    user.save(update_fields=["is_staff", "is_superuser"])
    _audit(
        AuditAction.USER_CHANGED,
        actor=user,
        request=request,
        user=user.get_username(),
        changed=["is_staff", "is_superuser"],
        is_staff=admin,
        is_superuser=admin,
    )


def _memberships_set(*, user, wanted: dict[str, str], request) -> None:
    """Make the user's memberships exactly `wanted` (team name -> role), creating teams that do not exist."""
    current = {m.team.name: m for m in Membership.objects.filter(user=user).select_related("team")}
    for team_name, role in wanted.items():
        membership = current.pop(team_name, None)
        details = {"user": user.get_username(), "team": team_name, "role": role}
        if membership is None:
            team, created = Team.objects.get_or_create(name=team_name)
            if created:
                _audit(
                    AuditAction.TEAM_CREATED,
                    actor=user,
                    request=request,
                    target_type="team",
                    target_id=team.pk,
                    team=team_name,
                    shares_history=team.shares_history,
                )
            membership = Membership.objects.create(user=user, team=team, role=role)
            _audit(
                AuditAction.ROLE_ADDED,
                actor=user,
                request=request,
                target_type="membership",
                target_id=membership.pk,
                **details,
            )
        elif membership.role != role:
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            _audit(
                AuditAction.ROLE_CHANGED,
                actor=user,
                request=request,
                target_type="membership",
                target_id=membership.pk,
                changed=["role"],
                previous_role=before,
                **details,
            )
    for team_name, membership in current.items():
        target_id, role = membership.pk, membership.role
        membership.delete()
        _audit(
            AuditAction.ROLE_REMOVED,
            actor=user,
            request=request,
            target_type="membership",
            target_id=target_id,
            user=user.get_username(),
            team=team_name,
            role=role,
        )


def _profile_claims(claims: dict) -> dict[str, str]:
    values = {
        "email": claims.get("email"),
        "first_name": claims.get("given_name"),
        "last_name": claims.get("family_name"),
    }
    limits = {"email": 254, "first_name": 150, "last_name": 150}
    return {name: value[: limits[name]] for name, value in values.items() if isinstance(value, str)}


def sso_sign_in(*, claims: dict, issuer: str, request=None) -> SignInResult:
    """The user to sign in for these verified claims, or why not (see the module's docstring)."""
    subject = claims.get("sub")
    username = claims.get(settings.OIDC_USERNAME_CLAIM)
    groups = groups_from_claim(claims.get(settings.OIDC_TEAM_CLAIM))
    if not isinstance(username, str) or not username.strip() or not isinstance(subject, str) or not subject:
        return _refuse(
            request=request,
            user=None,
            username="",
            reason="no user name claim",
            groups=groups,
            message=f"{settings.OIDC_PROVIDER_NAME} sent no user name ({settings.OIDC_USERNAME_CLAIM}) for you.",
        )
    username = username.strip()
    try:
        UnicodeUsernameValidator()(username)
        if len(username) > 150:
            raise ValidationError("too long")
    except ValidationError:
        return _refuse(
            request=request,
            user=None,
            username=username[:150],
            reason="unusable user name",
            groups=groups,
            message=f"The user name {settings.OIDC_PROVIDER_NAME} sent for you cannot be used here.",
        )
    grants = grants_for(settings.OIDC_ROLE_MAP, groups)
    with transaction.atomic():
        user, identity, problem = _find_user(issuer=issuer, subject=subject, username=username)
        if problem:
            return _refuse(
                request=request,
                user=None,
                username=username,
                reason=problem,
                groups=groups,
                message=f"The account {username} cannot sign in through {settings.OIDC_PROVIDER_NAME}.",
            )
        grant_problem = _grant_problem(grants, groups)
        if grant_problem is not None:
            reason, message = grant_problem
            # Only an account already signing in through the provider is deprovisioned; a local account that
            # is not linked yet stays as it is.
            linked = identity is not None and (identity.issuer, identity.subject) == (issuer, subject)
            ended = linked and _deprovision(user=user, identity=identity, request=request, reason=reason)
            return _refuse(
                request=request,
                user=user,
                username=username,
                reason=reason,
                message=message,
                groups=groups,
                access_ended=ended,
            )
        if user is not None and identity is None:
            identity = OidcIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        elif user is not None and (identity.issuer, identity.subject) != (issuer, subject):
            identity.issuer, identity.subject = issuer, subject
            identity.save(update_fields=["issuer", "subject"])
        if user is None:
            user = get_user_model().objects.create_user(username=username, password=None, **_profile_claims(claims))
            identity = OidcIdentity.objects.create(user=user, issuer=issuer, subject=subject)
            _audit(AuditAction.USER_CREATED, actor=user, request=request, user=username, groups=groups[:50])
        elif not user.is_active:
            if not identity.deactivated_by_claims:
                return _refuse(
                    request=request,
                    user=user,
                    username=username,
                    reason="deactivated by an administrator",
                    groups=groups,
                    message="Your account here is deactivated. Ask an administrator.",
                )
            user.is_active = True
            user.save(update_fields=["is_active"])
            _audit(AuditAction.USER_REACTIVATED, actor=user, request=request, user=username, groups=groups[:50])
        profile = _profile_claims(claims)
        if any(getattr(user, name) != value for name, value in profile.items()):
            for name, value in profile.items():
                setattr(user, name, value)
            user.save(update_fields=list(profile))
        _admin_set(user=user, admin=grants.admin, request=request)
        _memberships_set(user=user, wanted=grants.teams, request=request)
        identity.deactivated_by_claims = False
        identity.last_sign_in_at = timezone.now()
        identity.save(update_fields=["deactivated_by_claims", "last_sign_in_at"])
    return SignInResult(user=user)
