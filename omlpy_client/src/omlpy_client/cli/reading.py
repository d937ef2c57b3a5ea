"""Commands that read: ls, show, result, compare."""

from __future__ import annotations

import enum
import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omlpy_client.errors import ConfigurationError, JobNotSucceededError
from omlpy_client.job import Job, format_for_path

from .app import ExitCode, JobArgument, Output, OutputOption, app, connect, job_id
from .inputs import parse_moment
from .output import console, job_rows, key_values, print_json, say, seconds, table, when

_BINARY_FORMATS = {"xlsx", "parquet"}


class Format(enum.StrEnum):
    json = "json"
    csv = "csv"
    xlsx = "xlsx"
    parquet = "parquet"


@app.command("ls")
def list_jobs(
    state: Annotated[list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only jobs of this kind (repeatable).")] = None,
    script: Annotated[str | None, typer.Option("--script", help="Only jobs of this script.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only jobs of this user.")] = None,
    connection: Annotated[str | None, typer.Option("--connection", "-c", help="A connection's name or id.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created at or after: an ISO date or time, or 30m, 12h, 7d ago.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Created before (same forms as --since).")] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="A job id, an OML job id or the start of a script name.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many jobs.")] = 50,
    output: OutputOption = Output.text,
) -> int:
    """The jobs you may see, newest first; without --since/--until, the last 7 days."""
    created_from, created_to = parse_moment(since, "'--since'"), parse_moment(until, "'--until'")
    client = connect()
    try:
        found = list(
            client.jobs(
                state=state,
                kind=kind,
                script=script,
                owner=owner,
                connection=connection,
                since=created_from,
                until=created_to,
                search=search,
                limit=limit,
                page_size=min(limit, 200),
            )
        )
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--connection'") from None
    if output is Output.json:
        print_json([job.data for job in found])
    elif found:
        console().print(job_rows(found))
    else:
        say("No jobs match.")
    return ExitCode.OK


def _job_details(job: Job) -> list[tuple[str, str]]:
    durations = job.durations
    phases = ", ".join(
        f"{name} {seconds(durations.get(key))}"
        for key, name in (("queue", "queue"), ("oml", "OML"), ("fetch", "fetch"), ("total", "total"))
        if durations.get(key) is not None
    )
    result = job.result_info or {}
    result_text = (
        f"{result['size_bytes']} bytes, {result.get('row_count') if result.get('row_count') is not None else '?'} "
        f"rows ({result.get('shape') or 'shape unknown'}), sha256 {result['sha256']}"
        if result
        else ""
    )
    return [
        ("Job", job.id),
        ("State", job.state),
        ("Kind", job.kind),
        ("Script", job.script + (f" (owner {job.script_owner})" if job.script_owner else "")),
        ("Owner", job.owner),
        ("Connection", job.connection),
        ("Created", when(job.created_at)),
        ("Finished", when(job.finished_at)),
        ("Durations", phases),
        ("OML job", str(job.data.get("oml_job_id") or "")),
        ("OML elapsed", seconds(job.oml_elapsed_seconds)),
        ("Status polls", str(job.poll_count) if job.poll_count else ""),
        ("Parent", job.parent or ""),
        ("Error", job.last_error),
        ("Result", result_text),
        ("Request", json.dumps(job.request, ensure_ascii=False)),
    ]


@app.command()
def show(job: JobArgument, output: OutputOption = Output.text) -> int:
    """One job: its request, timings, result and every state transition."""
    wanted = job_id(job)
    found = connect().job(wanted)
    if output is Output.json:
        print_json(found.data)
        return ExitCode.OK
    out = console()
    out.print(key_values(_job_details(found)))
    if found.transitions:
        grid = table("AT", "FROM", "TO", "REASON", "HTTP", "LATENCY", title="Transitions")
        for step in found.transitions:
            latency = step.get("latency_ms")
            grid.add_row(
                when(step["at"]),
                step["from_state"],
                step["to_state"],
                step.get("reason", ""),
                str(step.get("http_status") or ""),
                f"{latency} ms" if latency is not None else "",
            )
        out.print()
        out.print(grid)
    return ExitCode.OK


@app.command()
def result(
    job: JobArgument,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="json is the body as received; by default, -o's suffix or json."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write to FILE, not stdout.")] = None,
    output: OutputOption = Output.text,
) -> int:
    """A job's result, streamed to stdout or to a file (exit 1 if the job did not succeed)."""
    chosen = (fmt.value if fmt else None) or (format_for_path(out) if out else None) or "json"
    if out is None and chosen in _BINARY_FORMATS and sys.stdout.isatty():
        raise typer.BadParameter(f"{chosen} is binary: write it to a file with -o FILE", param_hint="'--format'")
    wanted = job_id(job)
    found = connect().job(wanted)
    if not found.succeeded:
        raise JobNotSucceededError(found)
    if out is None:
        stream = sys.stdout.buffer
        for chunk in found.iter_result(chosen):
            stream.write(chunk)
        stream.flush()
        return ExitCode.OK
    path = found.download(out, chosen)
    size = path.stat().st_size
    if output is Output.json:
        print_json({"job": found.id, "format": chosen, "file": str(path), "bytes": size})
    else:
        say(f"Wrote the result of job {found.id} as {chosen} to {path} ({size:,} bytes).")
    return ExitCode.OK


def _comparison_tables(report: dict[str, Any], every_field: bool) -> list[Any]:
    a, b = report["a"], report["b"]
    fields = table("FIELD", f"A {a['id'][:8]}", f"B {b['id'][:8]}", "", title="Request")
    for row in report["request"]:
        if every_field or row["differs"]:
            fields.add_row(row["field"], row["a"], row["b"], "≠" if row["differs"] else "")
    timing = table("PHASE", "A", "B", "B - A", title="Timing")
    for row in report["timing"]:
        delta = row["delta"]
        timing.add_row(row["phase"], seconds(row["a"]), seconds(row["b"]), "" if delta is None else f"{delta:+.1f} s")
    tables: list[Any] = [fields, timing] if fields.row_count else [timing]
    outcome = report.get("result")
    if outcome is None:
        tables.append("Results: not compared (both jobs need a stored result).")
        return tables
    summary = "the same" if outcome["same"] else f"{outcome['differing_cells']} differing cells"
    limited = f", first {outcome['rows_compared']} rows" if outcome["limited"] else ""
    rows = f"rows {outcome['rows_a']} / {outcome['rows_b']}"
    tables.append(f"Results ({outcome['shape_a']} / {outcome['shape_b']}, {rows}{limited}): {summary}.")
    if outcome["diffs"]:
        cells = table("ROW", "KEY", "COLUMN", "A", "B", title="Differing cells")
        for diff in itertools.islice(outcome["diffs"], 50):
            cells.add_row(str(diff["row"]), diff["key"], diff["column"], diff["a"], diff["b"])
        tables.append(cells)
    return tables


@app.command()
def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="A job id.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Another job id.")],
    every_field: Annotated[
        bool, typer.Option("--all", help="List every request field, not only those differing.")
    ] = False,
    output: OutputOption = Output.text,
) -> int:
    """Two jobs side by side: request fields that differ, timing per phase, and their results cell by cell."""
    first, second = job_id(a), job_id(b)
    report = connect().compare(first, second)
    if output is Output.json:
        print_json(report)
        return ExitCode.OK
    out = console()
    if not any(row["differs"] for row in report["request"]) and not every_field:
        say("Requests: the same.")
    for part in _comparison_tables(report, every_field):
        if isinstance(part, str):
            out.print(part, markup=False)
        else:
            out.print(part)
            out.print()
    return ExitCode.OK
