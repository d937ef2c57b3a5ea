"""Settings for OMLPy Dashboard, read entirely from the environment.

Every variable is documented in `.env.example` and README.md. Defaults run the whole system with no
external service: SQLite and a file cache under `var/`, Celery on kombu's filesystem transport, and the
embedded OML engine switched on. Set DATABASE_URL, CELERY_BROKER_URL and REDIS_URL to run on
PostgreSQL and Redis with the same code.
"""

import base64
import hashlib
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from accounts.role_map import RoleMapError, parse_role_map
from accounts.sso_settings import sso_settings_problems
from omlpy_dashboard.broker import is_file_broker
from omlpy_dashboard.client_address import parse_networks
from omlpy_dashboard.logs import log_format_from
from omlpy_dashboard.secrets_check import audit_key_id, audit_key_weakness, is_fernet_key, secret_key_weakness

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# An empty value counts as unset, so that a .env copied from .env.example (which lists every variable, most of
# them empty) gives the defaults.
env.ENVIRON = {name: value for name, value in environ.Env.ENVIRON.items() if value != ""}
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)


def _development_secret(name: str) -> str:
    """A random secret kept under var/ so that local runs survive restarts; only used with DEBUG on."""
    path = VAR_DIR / f"dev-{name}"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: run deploy/init-env.py to generate one into .env."
        )
    SECRET_KEY = _development_secret("secret-key")
elif not DEBUG:
    _weakness = secret_key_weakness(SECRET_KEY)
    if _weakness:
        raise ImproperlyConfigured(f"SECRET_KEY is refused: {_weakness}. Run deploy/init-env.py to generate one.")

# Fernet keys for secrets stored in the database (OML passwords). The first key encrypts; all of them
# decrypt, so a key can be rotated by putting the new one first.
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
if not ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("ENCRYPTION_KEYS must be set when DEBUG is off.")
    digest = hashlib.sha256(_development_secret("encryption-seed").encode()).digest()
    ENCRYPTION_KEYS = [base64.urlsafe_b64encode(digest).decode()]
for _position, _key in enumerate(ENCRYPTION_KEYS, start=1):
    if not is_fernet_key(_key):
        raise ImproperlyConfigured(
            f"ENCRYPTION_KEYS: key {_position} is not a Fernet key (32 bytes, url-safe base64). "
            "Run deploy/init-env.py to generate one."
        )

# Keys of the audit trail's HMAC chain (audit.services), never stored in the database. The first signs; all verify,
# so a key is rotated by putting the new one first and keeping the old ones after it.
AUDIT_HMAC_KEYS = env.list("AUDIT_HMAC_KEYS", default=[])
if not AUDIT_HMAC_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "AUDIT_HMAC_KEYS must be set when DEBUG is off: the audit trail is signed with it. "
            "Run deploy/init-env.py to generate one into .env."
        )
    AUDIT_HMAC_KEYS = [_development_secret("audit-hmac-key")]
for _position, _key in enumerate(AUDIT_HMAC_KEYS, start=1):
    _weakness = audit_key_weakness(_key)
    if _weakness:
        raise ImproperlyConfigured(
            f"AUDIT_HMAC_KEYS: key {_position} is refused: {_weakness}. Run deploy/init-env.py to generate one."
        )
if len({audit_key_id(_key) for _key in AUDIT_HMAC_KEYS}) < len(AUDIT_HMAC_KEYS):
    raise ImproperlyConfigured("AUDIT_HMAC_KEYS lists the same key twice.")
# Signed checkpoints of the chain's head, written every AUDIT_CHECKPOINT_INTERVAL seconds outside the database,
# so that removing the newest entries is noticed; the newest AUDIT_CHECKPOINT_KEEP files are kept (0: all).
AUDIT_CHECKPOINT_DIR = env.str("AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit-checkpoints"))
AUDIT_CHECKPOINT_INTERVAL = env.float("AUDIT_CHECKPOINT_INTERVAL", default=300.0)
AUDIT_CHECKPOINT_KEEP = env.int("AUDIT_CHECKPOINT_KEEP", default=288)
if AUDIT_CHECKPOINT_INTERVAL <= 0 or AUDIT_CHECKPOINT_KEEP < 0:
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_INTERVAL must be positive and AUDIT_CHECKPOINT_KEEP at least 0.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # The project itself: management commands of the whole system (sweep_probe).
    "omlpy_dashboard",
    "audit",
    "accounts",
    "jobs",
    "metrics",
    "notifications",
    "omlengine",
]

MIDDLEWARE = [
    # First: every line of a request carries its id, and the request's own line covers everything after it.
    "omlpy_dashboard.logs.RequestLogMiddleware",
    "omlpy_dashboard.health.HealthCheckMiddleware",
    # /metrics, like the probes, before host validation and the https redirect (it checks its own token).
    "omlpy_dashboard.metrics_endpoint.MetricsMiddleware",
    # Before SecurityMiddleware: forwarded headers from anyone but TRUSTED_PROXIES are removed first.
    "omlpy_dashboard.client_address.ForwardedHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.ContentSecurityPolicyMiddleware",
    # Job data, results and downloads are never kept by a browser or a proxy (Cache-Control: no-store).
    "accounts.middleware.NoStoreMiddleware",
    "accounts.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "omlpy_dashboard.urls"
WSGI_APPLICATION = "omlpy_dashboard.wsgi.application"
ASGI_APPLICATION = "omlpy_dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, workers, the engine worker) share the file: WAL lets readers run beside
    # the writer, IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
    )
    _db.setdefault("TEST", {})["NAME"] = env.str("TEST_SQLITE_PATH", default=str(VAR_DIR / "test-db.sqlite3"))
else:
    _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    if env.str("TEST_DATABASE_NAME", default=""):
        _db.setdefault("TEST", {})["NAME"] = env.str("TEST_DATABASE_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (shared by every process: tokens of OML connections live here) ----------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="omlpy"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": env.str("CACHE_DIR", default=str(VAR_DIR / "cache")),
        }
    }

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (tightened further when DEBUG is off) ---------------------------------------------
# `manage.py check --deploy` passes with the defaults of DEBUG off. Behind a TLS-terminating proxy set
# BEHIND_TLS_PROXY so that the redirect to https does not loop.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Where cookies are https-only, plain http is redirected to https (health checks excepted).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SESSION_COOKIE_SECURE)
SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^readyz$", r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
# The reverse proxies in front (addresses or networks) whose X-Forwarded-* headers are believed: the client
# address of the throttle and the audit trail, and X-Forwarded-Proto. Anyone else's are removed on arrival.
TRUSTED_PROXIES = [str(network) for network in parse_networks(env.list("TRUSTED_PROXIES", default=[]))]
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY and not TRUSTED_PROXIES:
    raise ImproperlyConfigured(
        "BEHIND_TLS_PROXY is set but TRUSTED_PROXIES is empty: a proxy header is configured without a trusted "
        "proxy to take it from. Set TRUSTED_PROXIES to the proxy's address or network (e.g. 10.0.0.0/8)."
    )
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sent on every answer by accounts.middleware.ContentSecurityPolicyMiddleware: no inline scripts or styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
# Login throttling (accounts.throttling): this many failures within LOGIN_THROTTLE_SECONDS lock sign-in for
# LOGIN_THROTTLE_SECONDS: of a user name from one address, of a user name from addresses it never signed in
# from (the much higher USER limit), and of an address for every user name (IP).
LOGIN_THROTTLE_FAILURES = env.int("LOGIN_THROTTLE_FAILURES", default=5)
LOGIN_THROTTLE_USER_FAILURES = env.int("LOGIN_THROTTLE_USER_FAILURES", default=100)
LOGIN_THROTTLE_IP_FAILURES = env.int("LOGIN_THROTTLE_IP_FAILURES", default=30)
LOGIN_THROTTLE_SECONDS = env.int("LOGIN_THROTTLE_SECONDS", default=15 * 60)
# How long a browser (by a signed cookie) or an address stays known to a user after a successful sign-in.
LOGIN_THROTTLE_KNOWN_DAYS = env.int("LOGIN_THROTTLE_KNOWN_DAYS", default=90)
if (
    min(
        LOGIN_THROTTLE_FAILURES,
        LOGIN_THROTTLE_USER_FAILURES,
        LOGIN_THROTTLE_IP_FAILURES,
        LOGIN_THROTTLE_SECONDS,
        LOGIN_THROTTLE_KNOWN_DAYS,
    )
    < 1
):
    raise ImproperlyConfigured("The LOGIN_THROTTLE_* settings must be positive.")
# Personal API tokens expire: a new one lives API_TOKEN_DEFAULT_DAYS unless its creator picks another lifetime,
# at most API_TOKEN_MAX_DAYS.
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
API_TOKEN_MAX_DAYS = env.int("API_TOKEN_MAX_DAYS", default=365)
if not 1 <= API_TOKEN_MAX_DAYS <= 3650:
    raise ImproperlyConfigured("API_TOKEN_MAX_DAYS must be between 1 and 3650 days.")
if not 1 <= API_TOKEN_DEFAULT_DAYS <= API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured("API_TOKEN_DEFAULT_DAYS must be between 1 and API_TOKEN_MAX_DAYS.")

# --- Single sign-on (OpenID Connect, accounts.oidc) and local passwords -----------------------------
# README "Single sign-on" explains the provider's side and the role map. The OIDC_RP_* and OIDC_USE_PKCE names
# are mozilla-django-oidc's.
OIDC_ENABLED = env.bool("OIDC_ENABLED", default=False)
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_ISSUER = env.str("OIDC_ISSUER", default="")
# Explicit endpoints win over the issuer's discovery document (/.well-known/openid-configuration).
OIDC_ENDPOINTS = {
    "OIDC_AUTHORIZATION_ENDPOINT": env.str("OIDC_AUTHORIZATION_ENDPOINT", default=""),
    "OIDC_TOKEN_ENDPOINT": env.str("OIDC_TOKEN_ENDPOINT", default=""),
    "OIDC_USERINFO_ENDPOINT": env.str("OIDC_USERINFO_ENDPOINT", default=""),
    "OIDC_JWKS_ENDPOINT": env.str("OIDC_JWKS_ENDPOINT", default=""),
}
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_USERNAME_CLAIM = env.str("OIDC_USERNAME_CLAIM", default="preferred_username")
OIDC_TEAM_CLAIM = env.str("OIDC_TEAM_CLAIM", default="groups")
OIDC_REQUIRED_GROUP = env.str("OIDC_REQUIRED_GROUP", default="")
try:
    OIDC_ROLE_MAP = parse_role_map(env.str("OIDC_ROLE_MAP", default=""))
except RoleMapError as exc:
    raise ImproperlyConfigured(str(exc)) from None
_sso_problems = sso_settings_problems(
    enabled=OIDC_ENABLED,
    issuer=OIDC_ISSUER,
    endpoints=OIDC_ENDPOINTS,
    client_id=OIDC_RP_CLIENT_ID,
    client_secret=OIDC_RP_CLIENT_SECRET,
    algorithm=OIDC_RP_SIGN_ALGO,
)
if OIDC_ENABLED and not OIDC_ROLE_MAP:
    _sso_problems.append("OIDC_ROLE_MAP is empty: nobody could sign in through the provider")
if _sso_problems:
    raise ImproperlyConfigured("Single sign-on (OIDC_ENABLED): " + "; ".join(_sso_problems) + ".")
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("accounts.oidc.OidcBackend")
# Off: the sign-in form accepts only BREAK_GLASS_USERNAME (a superuser); API tokens keep working.
LOCAL_PASSWORDS = env.bool("LOCAL_PASSWORDS", default=True)
BREAK_GLASS_USERNAME = env.str("BREAK_GLASS_USERNAME", default="")
if not LOCAL_PASSWORDS and not OIDC_ENABLED:
    raise ImproperlyConfigured(
        "LOCAL_PASSWORDS is off but OIDC_ENABLED is not: nobody but the break-glass account could sign in. "
        "Switch single sign-on on, or local passwords back on."
    )

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="atomicfs://")
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The folder is polled: without a short interval a worker takes about one message a second.
        "polling_interval": 0.05,
    }
    if is_file_broker(CELERY_BROKER_URL)
    # A task not acknowledged within this time is handed to another worker; it must exceed the hard
    # time limit so that a slow but live task is never run twice.
    else {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
if not CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT.")
if "visibility_timeout" in CELERY_BROKER_TRANSPORT_OPTIONS and not (
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > CELERY_TASK_TIME_LIMIT
):
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be below CELERY_VISIBILITY_TIMEOUT.")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule"))
CELERY_TASK_ALWAYS_EAGER = False
# One queue name per deployment; test runs pick their own so that they never share a broker's queue.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="omlpy")
# The poll sweep, the janitor and re-fetches have a queue of their own, so that a backlog of submissions
# never delays jobs already in flight; notification deliveries have a third. Every worker consumes all three.
CELERY_TASK_QUEUES = [
    Queue(CELERY_TASK_DEFAULT_QUEUE),
    Queue(f"{CELERY_TASK_DEFAULT_QUEUE}.sweep"),
    Queue(f"{CELERY_TASK_DEFAULT_QUEUE}.notify"),
]
CELERY_TASK_ROUTES = {
    "jobs.tasks.poll_sweep": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.sweep"},
    "jobs.tasks.janitor": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.sweep"},
    # A re-fetch finishes a job OML has already finished: it must not wait behind new submissions.
    "jobs.tasks.fetch_result": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.sweep"},
    # Deliveries neither wait behind a backlog of submissions nor delay the sweep's queue.
    "notifications.tasks.deliver_notification": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.notify"},
    "notifications.tasks.deliver_due": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.notify"},
}

# --- Job lifecycle ------------------------------------------------------------------------------
JOBS_SWEEP_INTERVAL = env.float("JOBS_SWEEP_INTERVAL", default=1.0)
JOBS_SWEEP_BATCH = env.int("JOBS_SWEEP_BATCH", default=500)
JOBS_POLL_INITIAL = env.float("JOBS_POLL_INITIAL", default=0.5)
JOBS_POLL_FACTOR = env.float("JOBS_POLL_FACTOR", default=1.5)
JOBS_POLL_CAP = env.float("JOBS_POLL_CAP", default=10.0)
JOBS_POLL_LEASE = env.float("JOBS_POLL_LEASE", default=30.0)
JOBS_POLL_LAG_TARGET = env.float("JOBS_POLL_LAG_TARGET", default=1.5)
JOBS_POLL_STRATEGY = env.str("JOBS_POLL_STRATEGY", default="learned")
if JOBS_POLL_STRATEGY not in {"learned", "backoff", "fixed"}:
    raise ImproperlyConfigured("JOBS_POLL_STRATEGY must be learned, backoff or fixed.")
JOBS_POLL_FIXED_INTERVAL = env.float("JOBS_POLL_FIXED_INTERVAL", default=2.0)
# The poll log kept on each job: its first and its last status requests, and a count of those between.
JOBS_POLL_LOG_FIRST = env.int("JOBS_POLL_LOG_FIRST", default=5)
JOBS_POLL_LOG_LAST = env.int("JOBS_POLL_LOG_LAST", default=20)
if JOBS_POLL_LOG_FIRST < 0 or JOBS_POLL_LOG_LAST < 1:
    raise ImproperlyConfigured("JOBS_POLL_LOG_FIRST must be 0 or more and JOBS_POLL_LOG_LAST 1 or more.")
JOBS_JANITOR_INTERVAL = env.float("JOBS_JANITOR_INTERVAL", default=15.0)
JOBS_SUBMIT_DEADLINE = env.float("JOBS_SUBMIT_DEADLINE", default=120.0)
JOBS_FETCH_DEADLINE = env.float("JOBS_FETCH_DEADLINE", default=300.0)
JOBS_FETCH_RETRY_AFTER = env.float("JOBS_FETCH_RETRY_AFTER", default=20.0)
JOBS_SUBMIT_MAX_REFUSALS = env.int("JOBS_SUBMIT_MAX_REFUSALS", default=5)
JOBS_DEADLINE_GRACE = env.float("JOBS_DEADLINE_GRACE", default=60.0)
JOBS_SWEEP_THREADS = env.int("JOBS_SWEEP_THREADS", default=8)
JOBS_SUBMIT_GRACE = env.float("JOBS_SUBMIT_GRACE", default=2.0)
JOBS_SWEEP_SUBMIT_BATCH = env.int("JOBS_SWEEP_SUBMIT_BATCH", default=200)
# Seconds a sweep waits for the result downloads of the jobs it found finished; a slower one carries on in the
# background (the next sweep's polls never wait for it).
JOBS_SWEEP_FETCH_WAIT = env.float("JOBS_SWEEP_FETCH_WAIT", default=5.0)
if JOBS_SWEEP_FETCH_WAIT < 0:
    raise ImproperlyConfigured("JOBS_SWEEP_FETCH_WAIT must be 0 or more.")
JOBS_DEFAULT_TIMEOUT = env.int("JOBS_DEFAULT_TIMEOUT", default=1800)
JOBS_RESULT_CHUNK_BYTES = env.int("JOBS_RESULT_CHUNK_BYTES", default=1024 * 1024)
# A CSV rendition whose writer stored nothing for this many seconds (a download that stopped, a process that died)
# is written again by the next download (jobs.results.renditions).
JOBS_RENDITION_STALE = env.float("JOBS_RENDITION_STALE", default=300.0)
# Cells (rows x columns) per row group of a Parquet download: what its writer holds in memory at once.
JOBS_PARQUET_ROW_GROUP_CELLS = env.int("JOBS_PARQUET_ROW_GROUP_CELLS", default=128 * 1024)
if JOBS_RENDITION_STALE <= 0 or JOBS_PARQUET_ROW_GROUP_CELLS < 1:
    raise ImproperlyConfigured("JOBS_RENDITION_STALE must be above 0 and JOBS_PARQUET_ROW_GROUP_CELLS 1 or more.")
OML_CONNECT_TIMEOUT = env.float("OML_CONNECT_TIMEOUT", default=5.0)
OML_READ_TIMEOUT = env.float("OML_READ_TIMEOUT", default=60.0)
OML_GET_RETRIES = env.int("OML_GET_RETRIES", default=3)
OML_TOKEN_REFRESH_MARGIN = env.float("OML_TOKEN_REFRESH_MARGIN", default=300.0)

# --- Metrics and retention ----------------------------------------------------------------------
# The bearer token Prometheus presents at /metrics; /metrics is off (404) while it is empty.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Defaults of the retention policies (a team's policy may set its own): days a finished job keeps its result
# body, and its row and transitions; 0 keeps them forever. Pinned jobs and the audit trail are never purged.
RETENTION_RESULT_DAYS = env.int("RETENTION_RESULT_DAYS", default=90)
RETENTION_JOB_DAYS = env.int("RETENTION_JOB_DAYS", default=365)
if min(RETENTION_RESULT_DAYS, RETENTION_JOB_DAYS) < 0:
    raise ImproperlyConfigured("RETENTION_RESULT_DAYS and RETENTION_JOB_DAYS must be 0 (forever) or more days.")
if RETENTION_JOB_DAYS and not 0 < RETENTION_RESULT_DAYS <= RETENTION_JOB_DAYS:
    raise ImproperlyConfigured(
        "RETENTION_RESULT_DAYS must be between 1 and RETENTION_JOB_DAYS: removing a job removes its result."
    )
# How often the purge runs (seconds), how many jobs each of its transactions removes, and the pause between
# two of them (other writers get the tables in between).
RETENTION_PURGE_INTERVAL = env.float("RETENTION_PURGE_INTERVAL", default=3600.0)
RETENTION_PURGE_BATCH = env.int("RETENTION_PURGE_BATCH", default=500)
RETENTION_PURGE_PAUSE = env.float("RETENTION_PURGE_PAUSE", default=0.05)
if RETENTION_PURGE_INTERVAL <= 0 or RETENTION_PURGE_BATCH < 1 or RETENTION_PURGE_PAUSE < 0:
    raise ImproperlyConfigured(
        "RETENTION_PURGE_INTERVAL must be positive, RETENTION_PURGE_BATCH at least 1, RETENTION_PURGE_PAUSE >= 0."
    )

# Scripts the compose form's picker never lists (benchmark-only ones); they still run when named.
SCRIPT_PICKER_HIDDEN = env.list("SCRIPT_PICKER_HIDDEN", default=["timer"])
# How long the pickers (compose form, API) reuse a connection's script list; 0 asks OML every time. What a job
# runs is never read from it: a worker reads the list just before each POST.
SCRIPT_LIST_CACHE_SECONDS = env.float("SCRIPT_LIST_CACHE_SECONDS", default=30.0)
if SCRIPT_LIST_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("SCRIPT_LIST_CACHE_SECONDS must be 0 or more.")

# --- Notifications ------------------------------------------------------------------------------
# The dashboard's own address, for the links notifications carry (e.g. https://omlpy.example.com).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Webhook and Apprise targets resolving to loopback, private, link-local or other non-public addresses are
# refused (at save and at delivery) unless this allows them; by default only with DEBUG on.
NOTIFY_ALLOW_PRIVATE_TARGETS = env.bool("NOTIFY_ALLOW_PRIVATE_TARGETS", default=DEBUG)
# A failed delivery is tried again after base x 2^(attempts-1) seconds (at most NOTIFY_RETRY_MAX_SECONDS), up to
# NOTIFY_MAX_ATTEMPTS attempts; each attempt's connect and read timeout.
NOTIFY_RETRY_BASE_SECONDS = env.float("NOTIFY_RETRY_BASE_SECONDS", default=30.0)
NOTIFY_RETRY_MAX_SECONDS = env.float("NOTIFY_RETRY_MAX_SECONDS", default=3600.0)
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=8)
NOTIFY_TIMEOUT_SECONDS = env.float("NOTIFY_TIMEOUT_SECONDS", default=10.0)
# How long a worker holds a delivery it claimed (a worker that dies releases it then), and how often the
# periodic pass delivers what is due (retries, and messages lost with the broker).
NOTIFY_LEASE_SECONDS = env.float("NOTIFY_LEASE_SECONDS", default=120.0)
NOTIFY_DELIVERY_INTERVAL = env.float("NOTIFY_DELIVERY_INTERVAL", default=10.0)
# A rule that fires more than NOTIFY_DIGEST_AFTER times within NOTIFY_DIGEST_WINDOW seconds sends one digest per
# window instead.
NOTIFY_DIGEST_AFTER = env.int("NOTIFY_DIGEST_AFTER", default=20)
NOTIFY_DIGEST_WINDOW = env.float("NOTIFY_DIGEST_WINDOW", default=3600.0)
# How often the sweep looks for slow and stuck jobs and connections down; how long a connection's requests must
# keep failing before `connection_down` is sent.
NOTIFY_CHECK_INTERVAL = env.float("NOTIFY_CHECK_INTERVAL", default=30.0)
NOTIFY_CONNECTION_DOWN_AFTER = env.float("NOTIFY_CONNECTION_DOWN_AFTER", default=120.0)
# Days delivered notifications (and in-app ones, read or not) are kept; the retention purge removes older ones.
NOTIFY_KEEP_DAYS = env.int("NOTIFY_KEEP_DAYS", default=90)
# The Apprise URL schemes a rule may use (README, "Notifications").
NOTIFY_APPRISE_SCHEMES = env.list(
    "NOTIFY_APPRISE_SCHEMES",
    default=[
        "msteams",
        "pagerduty",
        "opsgenie",
        "slack",
        "discord",
        "mattermost",
        "matrix",
        "ntfy",
        "ntfys",
        "gotify",
        "gotifys",
    ],
)
if (
    min(NOTIFY_RETRY_BASE_SECONDS, NOTIFY_TIMEOUT_SECONDS, NOTIFY_LEASE_SECONDS, NOTIFY_DELIVERY_INTERVAL) <= 0
    or min(NOTIFY_DIGEST_WINDOW, NOTIFY_CHECK_INTERVAL, NOTIFY_CONNECTION_DOWN_AFTER) <= 0
    or NOTIFY_MAX_ATTEMPTS < 1
    or NOTIFY_DIGEST_AFTER < 1
    or NOTIFY_KEEP_DAYS < 0
    or NOTIFY_RETRY_MAX_SECONDS < NOTIFY_RETRY_BASE_SECONDS
):
    raise ImproperlyConfigured(
        "The NOTIFY_* settings must be positive (NOTIFY_KEEP_DAYS may be 0: forever), and NOTIFY_RETRY_MAX_SECONDS "
        "at least NOTIFY_RETRY_BASE_SECONDS."
    )
# Mail: Django's SMTP backend.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="omlpy@localhost")
if NOTIFY_LEASE_SECONDS <= 2 * NOTIFY_TIMEOUT_SECONDS:
    # An attempt (connect, then read) must end before its lease does, or a second worker could send it as well.
    raise ImproperlyConfigured("NOTIFY_LEASE_SECONDS must be more than twice NOTIFY_TIMEOUT_SECONDS.")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other: pick one.")

# --- Embedded engine ----------------------------------------------------------------------------
OMLENGINE_ENABLED = env.bool("OMLENGINE_ENABLED", default=DEBUG)
OMLENGINE_DATA_DB = env.str("OMLENGINE_DATA_DB", default=str(VAR_DIR / "omlengine-data.sqlite3"))
OMLENGINE_TOKEN_LIFETIME = env.int("OMLENGINE_TOKEN_LIFETIME", default=3600)
OMLENGINE_REFRESH_WINDOW = env.int("OMLENGINE_REFRESH_WINDOW", default=8 * 3600)
OMLENGINE_CPU_SECONDS = env.int("OMLENGINE_CPU_SECONDS", default=60)
OMLENGINE_MEMORY_MB = env.int("OMLENGINE_MEMORY_MB", default=1024)
OMLENGINE_WALL_SECONDS = env.int("OMLENGINE_WALL_SECONDS", default=300)
OMLENGINE_WORKER_SLOTS = env.int("OMLENGINE_WORKER_SLOTS", default=8)
# How long a stopping engine worker lets running jobs finish before it kills them and marks them failed.
OMLENGINE_WORKER_GRACE_SECONDS = env.float("OMLENGINE_WORKER_GRACE_SECONDS", default=10.0)
OMLENGINE_RESULT_RETENTION_DAYS = env.int("OMLENGINE_RESULT_RETENTION_DAYS", default=183)
# Fault injection for tests and benchmarks only, e.g. "500=0.1,503=0.1,delay=0.05,malformed=0.05".
OMLENGINE_FAULTS = env.str("OMLENGINE_FAULTS", default="")
OMLENGINE_TIMER_SCRIPTS = env.bool("OMLENGINE_TIMER_SCRIPTS", default=DEBUG)
# Scripts and their input queries run inside bubblewrap (no network, no environment, no VAR_DIR, as
# OMLENGINE_SANDBOX_USER when the engine runs as root); "off" runs them unisolated and says so at start.
OMLENGINE_SANDBOX = env.str("OMLENGINE_SANDBOX", default="on").lower()
if OMLENGINE_SANDBOX not in {"on", "off"}:
    raise ImproperlyConfigured("OMLENGINE_SANDBOX must be on or off.")
OMLENGINE_BWRAP = env.str("OMLENGINE_BWRAP", default="bwrap")
OMLENGINE_SANDBOX_USER = env.str("OMLENGINE_SANDBOX_USER", default="nobody")
# Token endpoint throttling: this many failed grants within OMLENGINE_TOKEN_THROTTLE_SECONDS lock a user name
# (or, with the higher limit, a client address) for OMLENGINE_TOKEN_THROTTLE_SECONDS.
OMLENGINE_TOKEN_THROTTLE_FAILURES = env.int("OMLENGINE_TOKEN_THROTTLE_FAILURES", default=5)
OMLENGINE_TOKEN_THROTTLE_IP_FAILURES = env.int("OMLENGINE_TOKEN_THROTTLE_IP_FAILURES", default=30)
OMLENGINE_TOKEN_THROTTLE_SECONDS = env.int("OMLENGINE_TOKEN_THROTTLE_SECONDS", default=15 * 60)
if min(OMLENGINE_TOKEN_THROTTLE_FAILURES, OMLENGINE_TOKEN_THROTTLE_IP_FAILURES, OMLENGINE_TOKEN_THROTTLE_SECONDS) < 1:
    raise ImproperlyConfigured("The OMLENGINE_TOKEN_THROTTLE_* settings must be positive.")

# --- Demo data ----------------------------------------------------------------------------------
DEFAULT_CONNECTION_URL = env.str("DEFAULT_CONNECTION_URL", default="")

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one JSON object per line (time, level, logger, message, process, and the request id or job uuid),
# for a log search engine; text: readable lines for development.
LOG_FORMAT = log_format_from(env.str("LOG_FORMAT", default=""), debug=DEBUG)
# Celery's worker and beat write through LOGGING (JSON in production) instead of installing their own handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "omlpy_dashboard.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "omlpy_dashboard.logs.JsonLineFormatter"},
        "text": {"()": "omlpy_dashboard.logs.TextFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # The sweep runs every second: its "received"/"succeeded" lines would drown the job transitions.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        # Celery gives these two a text handler of its own unless they already have one (they do not propagate).
        "celery.task": {"handlers": ["console"], "propagate": False},
        "multiprocessing": {"handlers": ["console"], "propagate": False},
    },
}
