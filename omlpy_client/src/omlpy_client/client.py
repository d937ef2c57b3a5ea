"""`Client(url, token)`: the dashboard's JSON API from Python.

from omlpy_client import Client

client = Client("http://127.0.0.1:8000", "omlpy_...")
job = client.submit("group_apply", "group_count", input="select * from IRIS", group_by="Species",
                    parameters={"oml_input_type": "pandas.DataFrame"})
job.wait(timeout=300)
frame = job.dataframe()
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypedDict

from .config import load_settings
from .errors import ConfigurationError
from .job import Job
from .transport import Transport

# Client.submit's keywords and the API's names for them.
FIELD_NAMES = {
    "connection": "connection",
    "kind": "kind",
    "script": "script",
    "script_owner": "script_owner",
    "input": "input",
    "parameters": "parameters",
    "rows": "rows",
    "group_by": "groupBy",
    "order_by": "orderBy",
    "times": "times",
    "parallel_flag": "parallelFlag",
    "parallel": "parallel",
    "service": "service",
    "async_flag": "asyncFlag",
    "timeout": "timeout",
    "graphics_flag": "graphicsFlag",
    "env_name": "envName",
}
_API_NAMES = frozenset(FIELD_NAMES.values())
MAX_PAGE = 200


def api_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords (or the API's own names) as the API's field names; TypeError for a name neither knows."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if name in FIELD_NAMES:
            body[FIELD_NAMES[name]] = value
        elif name in _API_NAMES:
            body[name] = value
        else:
            raise TypeError(f"unknown job field {name!r}; known: {', '.join(FIELD_NAMES)}")
    return body


class Connection(TypedDict):
    id: int
    name: str
    base_url: str
    api_version: str
    username: str
    poll_budget: int
    is_default: bool


class Script(TypedDict):
    name: str
    owner: str
    description: str
    date: str
    script: str


def _iso(value: datetime | str | None) -> str | None:
    """A time for the API; one without a zone is the local time."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return value  # the server says what is wrong with it
        return _iso(moment)
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is the local time
    return value.isoformat()


class Client:
    """The API of one dashboard, as one user (the owner of the token)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        retry_backoff: float = 0.5,
        poll_interval: float = 5.0,
    ) -> None:
        """`timeout`: seconds to wait for an answer; `retries` and `retry_backoff` (seconds, doubling): what
        is retried (omlpy_client.transport); `poll_interval`: the longest pause between polls of Job.wait."""
        self._transport = Transport(url, token, timeout=timeout, retries=retries, retry_backoff=retry_backoff)
        self.poll_interval = poll_interval

    @classmethod
    def from_config(cls) -> Client:
        """The client `omlpy login` set up, with OMLPY_URL, OMLPY_TOKEN, OMLPY_TIMEOUT, OMLPY_RETRIES,
        OMLPY_RETRY_BACKOFF and OMLPY_POLL_INTERVAL from the environment overriding it."""
        settings = load_settings()
        return cls(
            settings.url,
            settings.token,
            timeout=settings.timeout,
            retries=settings.retries,
            retry_backoff=settings.retry_backoff,
            poll_interval=settings.poll_interval,
        )

    @property
    def url(self) -> str:
        return self._transport.url

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._transport.json("GET", path, params=params)

    def _post(
        self, path: str, body: Any = None, *, idempotent: bool = False, headers: dict[str, str] | None = None
    ) -> Any:
        return self._transport.json("POST", path, body=body, idempotent=idempotent, headers=headers)

    # --- Who, where, what ---------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The token's user: username, name, email, teams and roles, whether they may submit, the token."""
        return dict(self._get("/whoami"))

    def connections(self) -> list[Connection]:
        return list(self._get("/connections"))

    def connection_id(self, connection: int | str | None) -> int:
        """A connection's id from its id or name; the default connection for None."""
        if isinstance(connection, int):
            return connection
        known = self.connections()
        for item in known:
            if connection is None and item["is_default"]:
                return item["id"]
            if connection is not None and (item["name"] == connection or str(item["id"]) == connection):
                return item["id"]
        if connection is None:
            raise ConfigurationError("no default connection: name one (see `omlpy connections`)")
        names = ", ".join(item["name"] for item in known) or "none"
        raise ConfigurationError(f"no connection {connection!r}; the connections are: {names}")

    def scripts(self, connection: int | str | None = None) -> list[Script]:
        """The scripts on a connection's OML service (the default connection's when none is named)."""
        return list(self._get(f"/connections/{self.connection_id(connection)}/scripts"))

    # --- Jobs -----------------------------------------------------------------------------------------

    def submit(self, kind: str, script: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """Submit a job: `kind` as the API names it (do_eval, table_apply, row_apply, group_apply, index_apply),
        the script's name, and any of: connection, script_owner, input, parameters (a dict), rows, group_by,
        order_by, times, parallel_flag, parallel, service, async_flag, timeout, graphics_flag, env_name.

        The request carries an Idempotency-Key (a new one unless given), so that a retry after a lost answer
        returns the job the first attempt created rather than running it twice.
        """
        return self.submit_request({"kind": kind, "script": script, **api_fields(fields)}, idempotency_key)

    def submit_request(self, request: Mapping[str, Any], idempotency_key: str | None = None) -> Job:
        """Submit a request in the API's own form (the body of POST /api/v1/jobs)."""
        key = idempotency_key or str(uuid.uuid4())
        return Job(self, self._post("/jobs", dict(request), headers={"Idempotency-Key": key}))

    def job(self, job_id: str) -> Job:
        """One job, with its transitions and result information."""
        return Job(self, self._get(f"/jobs/{job_id}"))

    def jobs(
        self,
        *,
        state: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        script: str | None = None,
        owner: str | None = None,
        connection: int | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        search: str | None = None,
        limit: int | None = None,
        page_size: int = 50,
    ) -> Iterator[Job]:
        """The jobs the user may see, newest first, with the history page's filters, page after page.

        Without `since`, `until` or `search`, the last 7 days (as the history page). `limit` stops after that
        many jobs; otherwise every matching job is read, page by page, as the iteration goes on.
        """
        params: dict[str, Any] = {
            "state": [state] if isinstance(state, str) else list(state or []),
            "kind": [kind] if isinstance(kind, str) else list(kind or []),
            "script": script,
            "owner": owner,
            "connection": None if connection is None else self.connection_id(connection),
            "created_from": _iso(since),
            "created_to": _iso(until),
            "q": search,
            "limit": max(1, min(page_size if limit is None else min(limit, page_size), MAX_PAGE)),
        }
        params = {name: value for name, value in params.items() if value not in (None, "", [])}
        given = 0
        while True:
            page = self._get("/jobs", params)
            for item in page["items"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield Job(self, item)
            if not page.get("next_cursor") or (limit is not None and given >= limit):
                return
            params["cursor"] = page["next_cursor"]

    def compare(self, a: str | Job, b: str | Job) -> dict[str, Any]:
        """Two jobs side by side: `request` (each field), `timing` (each phase) and `result` (cell by cell)."""
        first, second = (item.id if isinstance(item, Job) else item for item in (a, b))
        return dict(self._get(f"/jobs/{first}/compare/{second}"))
