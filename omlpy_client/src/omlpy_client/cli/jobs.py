"""Commands that start or stop jobs: submit, watch, cancel, rerun, clone."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from omlpy_client.errors import ConflictError, WaitTimeoutError
from omlpy_client.job import Job

from .app import (
    ExitCode,
    JobArgument,
    Output,
    OutputOption,
    QuietOption,
    TimeoutOption,
    WaitOption,
    app,
    connect,
    job_id,
)
from .follow import follow, out_of_time, outcome
from .inputs import parse_params, read_json_object
from .output import console, error_console, job_summary, print_json, say, warn

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", metavar="KEY=VALUE", help="A script parameter; VALUE is JSON when it reads as JSON (5, true)."
    ),
]
ParametersOption = Annotated[
    str | None, typer.Option("--parameters", metavar="JSON|@FILE", help="Script parameters as a JSON object.")
]
InputOption = Annotated[str | None, typer.Option("--input", metavar="SQL", help="The input query (table/row/group).")]
GroupByOption = Annotated[str | None, typer.Option("--group-by", help="Group-apply: columns to group by.")]
OrderByOption = Annotated[str | None, typer.Option("--order-by", help="Group-apply: columns to order each group by.")]
RowsOption = Annotated[int | None, typer.Option("--rows", min=1, help="Row-apply: rows per call.")]
TimesOption = Annotated[int | None, typer.Option("--times", min=1, help="Index-apply: how many calls.")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="LOW, MEDIUM, HIGH (v2: TP, TPURGENT).")]
ConnectionOption = Annotated[str | None, typer.Option("--connection", "-c", help="A connection's name or id.")]


def _finish(job: Job, *, wait: bool, timeout: float | None, output: Output, quiet: bool, verb: str) -> int:
    """Show a job just created; follow it with --wait. The exit code says how it ended."""
    if quiet:
        typer.echo(job.id)
    elif output is Output.text:
        say(f"{verb} job {job.id} ({job.kind} {job.script}): {job.state}")
    if not wait:
        if output is Output.json and not quiet:
            print_json(job.data)
        return ExitCode.OK
    try:
        follow(job, timeout=timeout, console=error_console(), live=True)
    except WaitTimeoutError as exc:
        if output is Output.json and not quiet:
            print_json(exc.job.data)
        return out_of_time(exc)
    if output is Output.json and not quiet:
        print_json(job.data)
    elif not quiet:
        say(job_summary(job))
    return outcome(job)


def _fields(given: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value is not None}


@app.command()
def submit(
    kind: Annotated[
        str | None, typer.Argument(help="do_eval, table_apply, row_apply, group_apply or index_apply.")
    ] = None,
    script: Annotated[str | None, typer.Argument(help="The script's name.")] = None,
    input_sql: InputOption = None,
    param: ParamOption = None,
    parameters: ParametersOption = None,
    group_by: GroupByOption = None,
    order_by: OrderByOption = None,
    rows: RowsOption = None,
    times: TimesOption = None,
    parallel: Annotated[int | None, typer.Option("--parallel", min=1, help="Preferred degree of parallelism.")] = None,
    parallel_flag: Annotated[
        bool | None, typer.Option("--parallel-flag/--no-parallel-flag", help="Let OML run calls in parallel.")
    ] = None,
    sync: Annotated[bool, typer.Option("--sync", help="A synchronous call rather than an OML job.")] = False,
    service: ServiceOption = None,
    connection: ConnectionOption = None,
    script_owner: Annotated[str | None, typer.Option("--script-owner", help="The owner of another's script.")] = None,
    job_timeout: Annotated[
        int | None, typer.Option("--job-timeout", help="Seconds OML lets the job run (1800-43200).")
    ] = None,
    graphics: Annotated[bool, typer.Option("--graphics", help="Capture the images the script draws.")] = False,
    env_name: Annotated[str | None, typer.Option("--env", help="Conda environment to run in.")] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", metavar="JOB.json", help="The request as the API's JSON body.")
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    quiet: QuietOption = False,
    output: OutputOption = Output.text,
) -> int:
    """Submit a job: KIND SCRIPT with options, or --file job.json (options given as well override the file)."""
    body: dict[str, Any] = read_json_object(f"@{file}", "'--file'") if file else {}
    if not file and (kind is None or script is None):
        raise typer.BadParameter("give KIND and SCRIPT, or --file job.json", param_hint="KIND SCRIPT")
    fields = _fields(
        {
            "kind": kind,
            "script": script,
            "input": input_sql,
            "groupBy": group_by,
            "orderBy": order_by,
            "rows": rows,
            "times": times,
            "parallel": parallel,
            "parallelFlag": parallel_flag,
            "service": service,
            "connection": connection,
            "script_owner": script_owner,
            "timeout": job_timeout,
            "envName": env_name,
        }
    )
    body.update(fields)
    if sync:
        body["asyncFlag"] = False
    if graphics:
        body["graphicsFlag"] = True
    if parameters is not None or param:
        if parameters is not None:
            base = read_json_object(parameters, "'--parameters'")
        else:  # --param adds to the file's parameters
            existing = body.get("parameters") or {}
            if isinstance(existing, str):
                base = read_json_object(existing, "'--file'")
            elif isinstance(existing, dict):
                base = dict(existing)
            else:
                raise typer.BadParameter("its parameters must be a JSON object", param_hint="'--file'")
        body["parameters"] = {**base, **parse_params(param)}
    job = connect().submit_request(body)
    return _finish(job, wait=wait, timeout=timeout, output=output, quiet=quiet, verb="Submitted")


@app.command()
def watch(
    job: JobArgument,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
) -> int:
    """Follow a job until it ends: its state and OML's elapsed time, live."""
    wanted = job_id(job)
    followed = connect().job(wanted)
    try:
        follow(followed, timeout=timeout, console=error_console() if output is Output.json else console(), live=True)
    except WaitTimeoutError as exc:
        if output is Output.json:
            print_json(exc.job.data)
        return out_of_time(exc)
    if output is Output.json:
        print_json(followed.data)
    else:
        say(job_summary(followed))
    return outcome(followed)


@app.command()
def cancel(job: JobArgument, output: OutputOption = Output.text) -> int:
    """Cancel a job that has not ended (exit 1, naming its state, if it has)."""
    wanted = job_id(job)
    target = connect().job(wanted)
    try:
        target.cancel()
    except ConflictError:
        target.refresh()
        if output is Output.json:
            print_json(target.data)
        warn(f"omlpy: job {target.id} has already ended ({target.state}); there is nothing to cancel")
        return ExitCode.JOB_FAILED
    if output is Output.json:
        print_json(target.data)
    elif target.state == "cancelled":
        say(f"Job {target.id} is cancelled.")
    else:
        say(f"Cancellation of job {target.id} requested ({target.state}); `omlpy watch {target.id}` follows it.")
    return ExitCode.OK


@app.command()
def rerun(
    job: JobArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    quiet: QuietOption = False,
    output: OutputOption = Output.text,
) -> int:
    """Run a job's request again, as a new job whose parent is the original."""
    wanted = job_id(job)
    new = connect().job(wanted).rerun()
    return _finish(new, wait=wait, timeout=timeout, output=output, quiet=quiet, verb="Re-ran as")


@app.command()
def clone(
    job: JobArgument,
    param: ParamOption = None,
    parameters: ParametersOption = None,
    input_sql: InputOption = None,
    group_by: GroupByOption = None,
    order_by: OrderByOption = None,
    rows: RowsOption = None,
    times: TimesOption = None,
    service: ServiceOption = None,
    connection: ConnectionOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    quiet: QuietOption = False,
    output: OutputOption = Output.text,
) -> int:
    """Submit a copy of a job with changes: each --param key=value sets one parameter (key=null removes it)."""
    changes = _fields(
        {
            "input": input_sql,
            "groupBy": group_by,
            "orderBy": order_by,
            "rows": rows,
            "times": times,
            "service": service,
            "connection": connection,
        }
    )
    patch = read_json_object(parameters, "'--parameters'") if parameters is not None else {}
    patch.update(parse_params(param))
    if patch:
        changes["parameters"] = patch
    wanted = job_id(job)
    new = connect().job(wanted).clone(**changes)
    return _finish(new, wait=wait, timeout=timeout, output=output, quiet=quiet, verb="Cloned as")
