"""A job on the dashboard, as the API describes it, with what can be done to it."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import JobNotSucceededError, WaitTimeoutError

if TYPE_CHECKING:
    import pandas

    from .client import Client

TERMINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
ResultFormat = Literal["json", "csv", "xlsx", "parquet"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("json", "csv", "xlsx", "parquet")
_SUFFIXES: dict[str, ResultFormat] = {".json": "json", ".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
DOWNLOAD_CHUNK_BYTES = 64 * 1024


def format_for_path(path: str | os.PathLike[str]) -> ResultFormat | None:
    """The download format a file name's suffix names, if any."""
    return _SUFFIXES.get(Path(path).suffix.lower())


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) and value else None


class Job:
    """One job. Attributes mirror the API's job object; `data` holds it whole, as last read."""

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self._client = client
        self._load(data)

    def _load(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = dict(data)
        self.id: str = str(data["id"])
        self.state: str = str(data["state"])
        self.kind: str = str(data.get("kind", ""))
        self.script: str = str(data.get("script", ""))
        self.script_owner: str = str(data.get("script_owner", ""))
        self.owner: str = str(data.get("owner", ""))
        self.connection: str = str(data.get("connection", ""))
        self.request: dict[str, Any] = dict(data.get("request") or {})
        self.parent: str | None = data.get("parent")
        self.last_error: str = str(data.get("last_error") or "")
        self.poll_count: int = int(data.get("poll_count") or 0)
        self.oml_elapsed_seconds: float | None = data.get("oml_elapsed_seconds")
        self.durations: dict[str, float | None] = dict(data.get("durations") or {})
        self.created_at: datetime | None = _time(data.get("created_at"))
        self.finished_at: datetime | None = _time(data.get("finished_at"))
        # Only in answers about one job (`Client.job`, `refresh`): the stored result's size, hash and shape,
        # and the state transitions.
        self.result_info: dict[str, Any] | None = data.get("result")
        self.transitions: list[dict[str, Any]] | None = data.get("transitions")

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.script} {self.state}>"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    # --- Following -------------------------------------------------------------------------------

    def refresh(self) -> Job:
        """Read the job again (with its transitions and result information)."""
        self._load(self._client._get(f"/jobs/{self.id}"))
        return self

    def wait(
        self,
        timeout: float | None = None,
        on_change: Callable[[Job], None] | None = None,
        *,
        interval: float = 0.5,
        max_interval: float | None = None,
    ) -> Job:
        """Poll until the job ends and return it, whatever its end (see `succeeded`).

        `on_change(job)` is called once at the start and whenever the state or OML's elapsed time changes.
        Polls start every `interval` seconds and space out to `max_interval` (the client's `poll_interval`)
        while nothing changes. Raises WaitTimeoutError when `timeout` seconds pass first.
        """
        longest = self._client.poll_interval if max_interval is None else max_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        pause = min(interval, longest)
        while True:
            observed = (self.state, self.oml_elapsed_seconds)
            if observed != seen:
                if on_change is not None:
                    on_change(self)
                if seen is not None and observed[0] != seen[0]:
                    pause = min(interval, longest)
                seen = observed
            if self.is_terminal:
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(self, timeout or 0.0)
            sleep = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(sleep)
            pause = min(longest, pause * 1.5)
            self.refresh()

    # --- Actions ---------------------------------------------------------------------------------

    def cancel(self) -> Job:
        """Ask for the job to be cancelled (ConflictError if it has already ended); returns it as it now is."""
        self._load(self._client._post(f"/jobs/{self.id}/cancel", idempotent=True))
        return self

    def rerun(self) -> Job:
        """A new job with the same request; its parent is this one."""
        return Job(self._client, self._client._post(f"/jobs/{self.id}/rerun"))

    def clone(self, **changes: Any) -> Job:
        """A new job with this one's request changed, e.g. `clone(parameters={"n": 5}, service="HIGH")`.

        Names are `Client.submit`'s keywords (or the API's own); None clears a field. `parameters` are merged
        into this job's key by key, None removing a key.
        """
        from .client import api_fields

        return Job(self._client, self._client._post(f"/jobs/{self.id}/clone", body=api_fields(changes)))

    # --- The result ------------------------------------------------------------------------------

    def _require_result(self) -> None:
        if not self.succeeded:
            self.refresh()
        if not self.succeeded:
            raise JobNotSucceededError(self)

    def iter_result(self, format: ResultFormat = "json", chunk_size: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
        """The result in `format` (the body as received for json; the pages' downloads otherwise), streamed."""
        if format not in RESULT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(RESULT_FORMATS)}, not {format!r}")
        self._require_result()
        response = self._client._transport.request("GET", f"/jobs/{self.id}/result.{format}", stream=True)
        with response:
            yield from response.iter_content(chunk_size=chunk_size)

    def result_json(self) -> Any:
        """The result body as OML sent it, decoded: usually `{"result": ...}`."""
        return json.loads(b"".join(self.iter_result("json")))

    def download(self, path: str | os.PathLike[str], format: ResultFormat | None = None) -> Path:
        """Stream the result to `path` (format from its suffix unless given; json otherwise) and return it.

        The file appears whole or not at all: it is written beside `path` and renamed when complete.
        """
        target = Path(path)
        chosen: ResultFormat = format or format_for_path(target) or "json"
        descriptor, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                for chunk in self.iter_result(chosen):
                    handle.write(chunk)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target

    def dataframe(self) -> pandas.DataFrame:
        """The result's rows as a pandas DataFrame (the columns of the CSV download, typed); needs the
        `dataframes` extra (pandas and pyarrow)."""
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise ImportError(
                "Results as DataFrames need pandas and pyarrow: pip install 'omlpy-client[dataframes]'"
            ) from None
        with tempfile.TemporaryDirectory(prefix="omlpy-") as folder:
            path = self.download(Path(folder) / "result.parquet", "parquet")
            return parquet.read_table(path).to_pandas()
