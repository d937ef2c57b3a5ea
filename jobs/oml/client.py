"""A client for OML4Py's REST API for Embedded Python Execution (OML_API.md), on requests.

The only code on the dashboard's side that knows OML's HTTP protocol. It holds no models: it is given a
connection's coordinates and a token store shared by every worker process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urljoin

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from metrics import recorder

from .errors import OMLError

logger = logging.getLogger(__name__)

TOKEN_PATH = "/omlusers/api/oauth2/v1/token"  # noqa: S105 - a URL path, not a secret
SCRIPTS_ROOT = "/oml/api/py-scripts"
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# Oracle answers this when no compute is free instead of queueing the call.
RESOURCE_BUSY = re.compile(r"unable to reserve .*resource", re.IGNORECASE)
# Bodies up to this size are looked at for an errorMessage: error bodies are small.
ERROR_BODY_LIMIT = 1024 * 1024
ELAPSED_RE = re.compile(r"^\s*(?:(\d+)\s+days?,?\s*)?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)\s*$")


class TokenStore(Protocol):
    """Where tokens live so that every worker shares them (the Django cache)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: float | None = None) -> Any: ...

    def delete(self, key: str) -> Any: ...


@dataclass(frozen=True)
class ConnectionInfo:
    """One OML service as one user, as plain values: where it is, who calls it, and how long to wait for it.
    `key` names the token in the shared store; a change to any field makes a new client."""

    key: str
    base_url: str
    api_version: str
    username: str
    password: str = field(repr=False)
    connect_timeout: float
    read_timeout: float
    get_retries: int


@dataclass(frozen=True)
class Submitted:
    """What OML answered a POST: an async job's URL, or a sync call's result body."""

    http_status: int
    latency_ms: int
    job_url: str = ""
    job_id: str = ""
    body: bytes = b""
    content_type: str = ""


@dataclass(frozen=True)
class JobStatus:
    state: str  # "pending", "finished" or "failed"
    http_status: int
    latency_ms: int
    requests_sent: int
    result_url: str = ""
    elapsed_seconds: float | None = None
    message: str = ""
    oml_status: str = ""  # the `status` text of a 202's body, as OML wrote it


@dataclass
class ResultStream:
    http_status: int
    latency_ms: int
    content_type: str
    chunks: Iterator[bytes]


def parse_elapsed(text: Any) -> float | None:
    """OML's elapsedTime ("HH:MM:SS", possibly with days or fractions) in seconds."""
    if not isinstance(text, str):
        return None
    match = ELAPSED_RE.match(text)
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def error_message(body: bytes | str, fallback: str) -> str:
    """The server's own words: errorMessage from a JSON body, or the text itself."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return (text.strip() or fallback)[:4000]
    if isinstance(data, dict):
        for key in ("errorMessage", "message", "error_description", "error"):
            if isinstance(data.get(key), str) and data[key]:
                return data[key][:4000]
    return (text.strip() or fallback)[:4000]


def body_error(body: bytes) -> str | None:
    """OML's errorMessage when `body` is an error answer (a JSON object with errorMessage and no result),
    even one that came with a 200; None for anything else. Error bodies are small: a body over
    ERROR_BODY_LIMIT is never one."""
    if not body or len(body) > ERROR_BODY_LIMIT or b"errorMessage" not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and "errorMessage" in data and "result" not in data:
        return str(data["errorMessage"])
    return None


def _has_error_message(body: bytes) -> bool:
    return body_error(body) is not None


def run_url(base_url: str, api_version: str, kind_path: str, script: str, owner: str = "") -> str:
    """The URL a call of `script` is POSTed to: {base}/oml/api/py-scripts/{ver}/{kind}/{script}[/{owner}]."""
    url = f"{base_url.rstrip('/')}{SCRIPTS_ROOT}/{api_version}/{kind_path}/{quote(script, safe='')}"
    return f"{url}/{quote(owner, safe='')}" if owner else url


def _send(operation: str, session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One call to OML, counted in omlpy_oml_requests_total (each retry urllib3 made as well) and timed in
    omlpy_oml_request_duration_seconds. The code label is the HTTP status, or "error" when none came."""
    started = time.monotonic()
    try:
        response = session.request(method, url, **kwargs)
    except requests.RequestException:
        recorder.inc("omlpy_oml_requests_total", operation=operation, code="error")
        recorder.observe("omlpy_oml_request_duration_seconds", time.monotonic() - started, operation=operation)
        raise
    recorder.observe("omlpy_oml_request_duration_seconds", time.monotonic() - started, operation=operation)
    for retried in getattr(getattr(response.raw, "retries", None), "history", ()) or ():
        code = str(retried.status) if retried.status else "error"
        recorder.inc("omlpy_oml_requests_total", operation=operation, code=code)
    recorder.inc("omlpy_oml_requests_total", operation=operation, code=str(response.status_code))
    return response


def _session(pool_size: int, base_url: str, retries: int) -> requests.Session:
    session = requests.Session()
    # The environment (proxies for this server, a CA bundle) is read once here. By default requests reads
    # it again on every request, which was a twentieth of a sweep's CPU.
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    # GET and DELETE are idempotent: retry them on connection errors and overload answers. POST never.
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.3,
        backoff_max=5,
        status_forcelist=sorted(TRANSIENT_STATUSES),
        allowed_methods=frozenset({"GET", "DELETE"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept"] = "application/json"
    return session


class OMLClient:
    """One OML service, as one user. Thread-safe: the sweep polls many jobs concurrently through it."""

    def __init__(self, info: ConnectionInfo, store: TokenStore, *, pool_size: int = 16):
        self.info = info
        self.store = store
        self.session = _session(pool_size, info.base_url, info.get_retries)
        # POSTs travel on connections of their own, each used once. A pooled keep-alive connection that the
        # server is closing at that moment fails with a reset that cannot tell whether the request arrived,
        # and OML has no idempotency key, so such a submission could only end "outcome unknown". A fresh
        # connection fails, if at all, while connecting: before anything was sent, so safe to try again.
        self._post_session = _session(pool_size, info.base_url, info.get_retries)
        self._token_lock = threading.Lock()
        # This process's copy of the last token: used while it is valid (the shared store is read only when
        # it is about to expire), and while the shared store cannot be reached.
        self._local_token: dict | None = None
        self.timeout = (info.connect_timeout, info.read_timeout)
        # Script list reads that callers share (scripts_now).
        self._list_lock = threading.Lock()
        self._list_in_flight: _ListRound | None = None
        self._list_waiting: _ListRound | None = None

    # --- URLs -------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"{self.info.base_url.rstrip('/')}{SCRIPTS_ROOT}/{self.info.api_version}"

    def run_url(self, kind_path: str, script: str, owner: str = "") -> str:
        return run_url(self.info.base_url, self.info.api_version, kind_path, script, owner)

    def absolute(self, url: str) -> str:
        return urljoin(f"{self.info.base_url.rstrip('/')}/", url)

    # --- Tokens -----------------------------------------------------------------------------
    @property
    def _token_key(self) -> str:
        return f"oml-token:{self.info.key}"

    def _stored_token(self) -> dict | None:
        """The shared token, or this process's copy when the store fails: the store (Redis in production)
        is an optimisation, and its outage must not turn every call into an error."""
        try:
            return self.store.get(self._token_key)
        except Exception as exc:
            logger.warning("token store unavailable (%s); using this process's token", exc.__class__.__name__)
            return self._local_token

    def _keep_token(self, entry: dict, lifetime: float) -> None:
        self._local_token = entry
        try:
            self.store.set(self._token_key, entry, timeout=lifetime)
        except Exception as exc:
            logger.warning("token store unavailable (%s); token kept in this process", exc.__class__.__name__)

    def _forget_token(self) -> None:
        self._local_token = None
        try:
            self.store.delete(self._token_key)
        except Exception as exc:
            logger.warning("token store unavailable (%s); could not forget the token", exc.__class__.__name__)

    def token(self, *, force: bool = False) -> str:
        """A valid access token, from the shared store when one is there and not about to expire."""
        if not force:
            # Every request asks: a valid copy in this process saves a round trip to the shared store.
            local = self._local_token
            if local and local["expires_at"] - settings.OML_TOKEN_REFRESH_MARGIN > time.time():
                return local["access"]
            cached = self._stored_token()
            if cached and cached["expires_at"] - settings.OML_TOKEN_REFRESH_MARGIN > time.time():
                self._local_token = cached
                return cached["access"]
        with self._token_lock:
            cached = self._stored_token()
            if not force and cached and cached["expires_at"] - settings.OML_TOKEN_REFRESH_MARGIN > time.time():
                return cached["access"]
            fresh = None
            if cached and cached["expires_at"] > time.time() and not force:
                fresh = self._grant({"grant_type": "refresh_token", "refresh_token": cached["access"]}, quiet=True)
            if fresh is None:
                fresh = self._grant(
                    {"grant_type": "password", "username": self.info.username, "password": self.info.password}
                )
            assert fresh is not None
            lifetime = max(float(fresh.get("expiresIn") or 3600), 1.0)
            entry = {"access": fresh["accessToken"], "expires_at": time.time() + lifetime}
            self._keep_token(entry, lifetime)
            return entry["access"]

    def _grant(self, body: dict, quiet: bool = False) -> dict | None:
        url = f"{self.info.base_url.rstrip('/')}{TOKEN_PATH}"
        try:
            response = _send("token", self.session, "POST", url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise OMLError(f"Cannot reach the token endpoint: {exc.__class__.__name__}", permanent=False) from None
        if response.status_code == 200:
            try:
                data = response.json()
                if isinstance(data.get("accessToken"), str):
                    return data
            except ValueError:
                pass
            if quiet:
                return None
            raise OMLError("The token endpoint sent no accessToken.", permanent=False, http_status=200)
        if quiet:
            return None
        permanent = response.status_code in (400, 401, 403)
        message = error_message(response.content, "authentication failed")
        raise OMLError(f"Authentication failed: {message}", permanent=permanent, http_status=response.status_code)

    # --- Requests ---------------------------------------------------------------------------
    def _request(self, operation: str, method: str, url: str, **kwargs: Any) -> tuple[requests.Response, int]:
        """One authenticated request; a 401 re-authenticates once and repeats it."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token(force=attempt == 2)}"}
            session = self.session
            if method == "POST":
                headers["Content-Type"] = "application/json"
                headers["Connection"] = "close"
                session = self._post_session
            started = time.monotonic()
            response = _send(
                operation, session, method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **kwargs
            )
            latency_ms = int((time.monotonic() - started) * 1000)
            if response.status_code != 401 or attempt == 2:
                return response, latency_ms
            self._forget_token()
            response.close()
        raise AssertionError("unreachable")

    def submit(self, kind_path: str, script: str, owner: str, body: dict) -> Submitted:
        """POST a call. Never retried here: OML has no idempotency key."""
        url = self.run_url(kind_path, script, owner)
        try:
            response, latency_ms = self._request("submit", "POST", url, data=json.dumps(body))
        except requests.ConnectionError as exc:
            # Refused before anything was sent is safe to try again; anything else may have reached OML.
            refused = "refused" in str(exc).lower() or "NewConnectionError" in repr(exc)
            logger.warning("POST %s failed (%s): %r", url, "refused" if refused else "outcome unknown", exc)
            raise OMLError(
                f"Cannot reach OML: {exc.__class__.__name__}", permanent=False, outcome_unknown=not refused
            ) from None
        except requests.Timeout:
            raise OMLError(
                "OML did not answer the submission in time.", permanent=False, outcome_unknown=True
            ) from None
        except requests.RequestException as exc:
            raise OMLError(f"Request failed: {exc.__class__.__name__}", permanent=False, outcome_unknown=True) from None
        status = response.status_code
        content = response.content
        if status == 201:
            location = response.headers.get("Location", "")
            if not location:
                raise OMLError(
                    "OML accepted the job (201) but sent no Location header; its job id is unknown.",
                    permanent=True,
                    http_status=201,
                    latency_ms=latency_ms,
                )
            job_url = self.absolute(location)
            return Submitted(
                http_status=201, latency_ms=latency_ms, job_url=job_url, job_id=job_url.rstrip("/").rsplit("/", 1)[-1]
            )
        if status == 200 and not _has_error_message(content):
            return Submitted(
                http_status=200,
                latency_ms=latency_ms,
                body=content,
                content_type=response.headers.get("Content-Type", "application/json"),
            )
        raise self._error(status, content, latency_ms)

    def _error(self, status: int, content: bytes, latency_ms: int | None = None) -> OMLError:
        message = error_message(content, f"OML answered HTTP {status}")
        transient = status in TRANSIENT_STATUSES or bool(RESOURCE_BUSY.search(message))
        return OMLError(message, permanent=not transient, http_status=status, latency_ms=latency_ms)

    def status(self, job_url: str) -> JobStatus:
        """One status request. 202 pending; 302 finished (result at Content-Location); 500 or an
        errorMessage body: failed. Transient failures (overload answers included) raise
        OMLError(permanent=False)."""
        try:
            response, latency_ms = self._request("status", "GET", job_url)
        except requests.RequestException as exc:
            raise OMLError(f"Cannot reach OML: {exc.__class__.__name__}", permanent=False) from None
        retries = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        sent = 1 + len(retries)
        status = response.status_code
        content = response.content
        if status == 202:
            elapsed = None
            said = ""
            try:
                data = json.loads(content) if content else {}
                if isinstance(data, dict):
                    elapsed = parse_elapsed(data.get("elapsedTime"))
                    said = str(data.get("status") or "")[:200]
            except ValueError:
                pass  # a 202 means pending whatever its body says
            return JobStatus("pending", 202, latency_ms, sent, elapsed_seconds=elapsed, oml_status=said)
        if status in (301, 302, 303, 307, 308) or (status == 200 and not _has_error_message(content)):
            target = response.headers.get("Content-Location") or response.headers.get("Location") or ""
            result_url = self.absolute(target) if target else f"{job_url.rstrip('/')}/result"
            return JobStatus("finished", status, latency_ms, sent, result_url=result_url)
        # An overloaded server (429, 502, 503, 504) says nothing about the job, whatever errorMessage its body
        # carries (the retries above have run out): ask again at the next poll.
        if status in TRANSIENT_STATUSES:
            raise self._error(status, content, latency_ms)
        if status == 500 or _has_error_message(content):
            return JobStatus(
                "failed", status, latency_ms, sent, message=error_message(content, "OML reported the job as failed")
            )
        raise self._error(status, content, latency_ms)

    def result(self, result_url: str) -> ResultStream:
        """Open the result for streaming. 404 (not ready) and overload are transient; 400/500 permanent."""
        try:
            started = time.monotonic()
            response = self._open_stream(result_url, force_token=False)
            if response.status_code == 401:
                response.close()
                self.store.delete(self._token_key)
                response = self._open_stream(result_url, force_token=True)
            latency_ms = int((time.monotonic() - started) * 1000)
        except requests.RequestException as exc:
            raise OMLError(f"Cannot reach OML: {exc.__class__.__name__}", permanent=False) from None
        if response.status_code == 200:
            return ResultStream(
                200,
                latency_ms,
                response.headers.get("Content-Type", "application/json"),
                response.iter_content(chunk_size=256 * 1024),
            )
        content = response.content
        if response.status_code == 404:
            raise OMLError("The result is not ready yet.", permanent=False, http_status=404, latency_ms=latency_ms)
        raise self._error(response.status_code, content, latency_ms)

    def _open_stream(self, url: str, *, force_token: bool) -> requests.Response:
        return _send(
            "result",
            self.session,
            "GET",
            url,
            headers={"Authorization": f"Bearer {self.token(force=force_token)}"},
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        )

    def delete(self, job_url: str) -> int:
        """Delete a job (stopping it if running); returns the HTTP status. 404/500 mean it is already gone."""
        try:
            response, _ = self._request("delete", "DELETE", job_url)
        except requests.RequestException as exc:
            raise OMLError(f"Cannot reach OML: {exc.__class__.__name__}", permanent=False) from None
        if response.status_code in (200, 202, 204, 404, 500):
            return response.status_code
        raise self._error(response.status_code, response.content)

    def _script_items(self) -> list[dict]:
        """One GET of the script list: its items as OML sent them (objects with a name, keys in any case)."""
        try:
            response, _ = self._request("scripts", "GET", f"{self.root}/scripts")
        except requests.RequestException as exc:
            raise OMLError(f"Cannot reach OML: {exc.__class__.__name__}", permanent=False) from None
        if response.status_code != 200:
            raise self._error(response.status_code, response.content)
        try:
            data = response.json()
        except ValueError:
            raise OMLError("OML sent a script list that is not JSON.", permanent=False, http_status=200) from None
        items = data.get("result") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise OMLError("OML sent a script list of an unknown shape.", permanent=False, http_status=200)
        return [item for item in items if isinstance(item, dict)]

    def scripts(self) -> list[dict]:
        """The scripts the user may run: name, owner, description, date, script (source)."""
        scripts = []
        for item in self._script_items():
            listed = _script_entry(item)
            if listed is not None:
                scripts.append(listed)
        return scripts

    def scripts_now(self) -> list[dict]:
        """The raw items of a script list read sent after this call began: what OML lists now, never an
        earlier answer. Calls made while a read is in flight share the next read, so that many jobs starting
        or finishing together cost one request (OML has no read of a single script)."""
        ahead: _ListRound | None = None
        with self._list_lock:
            if self._list_in_flight is None:
                mine = self._list_in_flight = _ListRound()
                mine.claimed = True
            else:
                # The read in flight was sent before this call: wait for it, then share the one after it.
                if self._list_waiting is None:
                    self._list_waiting = _ListRound()
                mine, ahead = self._list_waiting, self._list_in_flight
            mine.members += 1
        if ahead is not None:
            ahead.done.wait()
            with self._list_lock:
                sends, mine.claimed = not mine.claimed, True
            if not sends:
                mine.done.wait()
                return mine.outcome()
        try:
            mine.items = self._script_items()
        except Exception as exc:
            mine.error = exc
        finally:
            with self._list_lock:
                # The calls that waited for this read share the next one, sent by the first of them to wake.
                self._list_in_flight, self._list_waiting = self._list_waiting, None
            mine.done.set()
        return mine.outcome()

    def listed_script(self, name: str, owner: str = "") -> dict | None:
        """`name` as OML lists it now (scripts_now), or None when the list does not show it. Without an owner
        the caller's own script comes before a global one of the same name, as OML runs them."""
        found: dict | None = None
        for item in self.scripts_now():
            entry = _script_entry(item, name=name)
            if entry is None or (owner and entry["owner"] != owner):
                continue
            if owner or entry["owner"].upper() == self.info.username.upper():
                return entry
            found = found or entry
        return found


class _ListRound:
    """One script list read and the calls that share it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.claimed = False
        self.members = 0  # the calls sharing it
        self.items: list[dict] = []
        self.error: Exception | None = None

    def outcome(self) -> list[dict]:
        if self.error is not None:
            raise self.error
        return self.items


def _script_entry(item: dict, name: str | None = None) -> dict | None:
    """A listed script with lower-case keys, or None when it has no name (or not `name`)."""
    listed = item.get("name")
    if listed is None:
        # Keys in another case than OML documents: look at every key.
        item = {str(key).lower(): value for key, value in item.items()}
        listed = item.get("name")
    if not listed or (name is not None and str(listed) != name):
        return None
    return {
        "name": str(listed),
        "owner": str(item.get("owner") or ""),
        "description": str(item.get("description") or ""),
        "date": str(item.get("date") or ""),
        "script": str(item.get("script") or ""),
    }


# --- One client per connection per process ----------------------------------------------------

_clients: dict[ConnectionInfo, OMLClient] = {}
_clients_lock = threading.Lock()


def client_for(info: ConnectionInfo, store: TokenStore | None = None) -> OMLClient:
    """The process's client for a connection (reused, so that its connection pool is too)."""
    if store is None:
        from django.core.cache import cache

        store = cache
    with _clients_lock:
        client = _clients.get(info)
        if client is None:
            client = OMLClient(info, store, pool_size=32)
            _clients[info] = client
    return client
