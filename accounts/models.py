import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    shares_history = models.BooleanField(
        default=True, help_text="Analysts of the team see each other's jobs (read-only)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ANALYST = "analyst", "Analyst"
        # An analyst who also manages the team's notification rules (and sees its storage, pins its jobs).
        LEAD = "lead", "Team lead"
        AUDITOR = "auditor", "Auditor"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANALYST)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="membership_unique"),
            models.CheckConstraint(condition=Q(role__in=["analyst", "lead", "auditor"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class ApiToken(models.Model):
    """A personal API token. Only a SHA-256 of the secret is stored; the secret is shown once.

    Every token expires, and is either read-write or read-only (refused every write of the API).
    """

    class Scope(models.TextChoices):
        READ_WRITE = "read_write", "Read and write"
        READ_ONLY = "read_only", "Read only"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ_WRITE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="The API refuses the token from this moment on.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=["read_write", "read_only"]), name="api_token_scope_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_read_only(self) -> bool:
        return self.scope == self.Scope.READ_ONLY

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired


class LoginLock(models.Model):
    """A sign-in lock taken after too many failures (accounts.throttling); the row is the lock.

    Failures are counted in the cache; a lock is a row so that administrators can list and lift current locks.
    """

    class Scope(models.TextChoices):
        USER_IP = "user_ip", "Account, from one address"
        USER = "user", "Account, from addresses it never signed in from"
        IP = "ip", "Address, every account"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    # The user name as typed, trimmed and lower-cased: guesses need not name an existing account.
    username = models.CharField(max_length=150, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    failures = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    locked_until = models.DateTimeField()

    class Meta:
        verbose_name = "sign-in lock"
        ordering = ["-locked_until"]
        indexes = [
            # The check at each sign-in: locks of the user name, or of the address, still in force.
            models.Index(fields=["username", "locked_until"], name="loginlock_username_idx"),
            models.Index(fields=["address", "locked_until"], name="loginlock_address_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="user_ip", address__isnull=False) & ~Q(username="")
                    | Q(scope="user", address__isnull=True) & ~Q(username="")
                    | Q(scope="ip", address__isnull=False, username="")
                ),
                name="loginlock_scope_fields",
            ),
            models.CheckConstraint(condition=Q(locked_until__gt=models.F("created_at")), name="loginlock_ends_later"),
        ]

    def __str__(self) -> str:
        who = " from ".join(part for part in (self.username, self.address) if part)
        return f"{self.get_scope_display()}: {who}"


class OidcIdentity(models.Model):
    """The identity provider's account (issuer and subject, the `sub` claim) a user signs in with.

    `deactivated_by_claims` tells a user deactivated because the provider's claims stopped granting access
    (reactivated when they grant it again at a sign-in) from one an administrator deactivated (who stays so).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identity")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    deactivated_by_claims = models.BooleanField(default=False)

    class Meta:
        verbose_name = "single sign-on identity"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="oidc_identity_unique")]

    def __str__(self) -> str:
        return f"{self.user} as {self.subject} at {self.issuer}"
