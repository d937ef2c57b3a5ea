"""Signing in and out, who I am, and what I can run on: login, logout, whoami, connections, scripts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from omlpy_client.client import Client
from omlpy_client.config import forget_login, save_login, stored_url
from omlpy_client.errors import AuthenticationError, ConfigurationError
from omlpy_client.transport import server_url

from .app import ExitCode, Output, OutputOption, app, connect
from .output import console, key_values, print_json, say, table, warn


def _identity_rows(me: dict[str, Any], url: str) -> list[tuple[str, str]]:
    teams = ", ".join(f"{team['team']} ({team['role']})" for team in me.get("teams", [])) or "none"
    token = me.get("token") or {}
    return [
        ("Server", url),
        ("User", me["username"]),
        ("Name", me.get("full_name", "")),
        ("Email", me.get("email", "")),
        ("Teams", teams),
        ("Admin", "yes" if me.get("is_admin") else ""),
        ("May submit", "yes" if me.get("can_submit") else "no (read-only)"),
        ("Token", f"{token['name']} ({token['prefix']}…)" if token else ""),
    ]


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="The dashboard's address, e.g. https://omlpy.example.com")],
    token: Annotated[
        str | None,
        typer.Option("--token", help="A personal API token (from the dashboard's Account → API tokens); asked for."),
    ] = None,
    output: OutputOption = Output.text,
) -> int:
    """Sign in: check the token with the server, then keep it in your configuration folder (mode 0600)."""
    address = server_url(url)
    if not address.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} is not an http:// or https:// address", param_hint="URL")
    if token is None:
        token = typer.prompt(f"API token (create one at {address}/account/tokens/)", hide_input=True)
    token = token.strip()
    if not token:
        raise typer.BadParameter("the token is empty", param_hint="'--token'")
    try:
        me = Client(address, token).whoami()
    except AuthenticationError as exc:
        warn(f"omlpy: {address} refused this token ({exc.message}); create a new one at {address}/account/tokens/")
        return ExitCode.REFUSED
    path = save_login(address, token)
    if output is Output.json:
        print_json({"url": address, "user": me, "config": str(path)})
    else:
        say(f"Signed in to {address} as {me['username']}. The token is kept in {path} (readable by you only).")
    return ExitCode.OK


@app.command()
def logout(output: OutputOption = Output.text) -> int:
    """Forget the stored token (it stays valid on the server until revoked at Account → API tokens)."""
    url = stored_url()
    forgotten = forget_login()
    if output is Output.json:
        print_json({"signed_out": forgotten, "url": url or None})
    elif forgotten:
        say(f"Signed out of {url}. To revoke the token itself, use {url}/account/tokens/.")
    else:
        say("Not signed in; nothing to forget.")
    return ExitCode.OK


@app.command()
def whoami(output: OutputOption = Output.text) -> int:
    """Who the token belongs to: user, teams and roles, and whether it may submit."""
    client = connect()
    me = client.whoami()
    if output is Output.json:
        print_json({"url": client.url, **me})
    else:
        console().print(key_values(_identity_rows(me, client.url)))
    return ExitCode.OK


@app.command()
def connections(output: OutputOption = Output.text) -> int:
    """The OML services the dashboard submits to."""
    items = connect().connections()
    if output is Output.json:
        print_json(items)
        return ExitCode.OK
    grid = table("ID", "NAME", "BASE URL", "API", "OML USER", "DEFAULT")
    for item in items:
        grid.add_row(
            str(item["id"]),
            item["name"],
            item["base_url"],
            item["api_version"],
            item["username"],
            "yes" if item["is_default"] else "",
        )
    console().print(grid)
    return ExitCode.OK


@app.command()
def scripts(
    connection: Annotated[
        str | None, typer.Option("--connection", "-c", help="A connection's name or id; the default one if omitted.")
    ] = None,
    output: OutputOption = Output.text,
) -> int:
    """The scripts registered on a connection's OML service."""
    client = connect()
    try:
        items = client.scripts(connection)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--connection'") from None
    if output is Output.json:
        print_json(items)
        return ExitCode.OK
    grid = table("NAME", "OWNER", "DESCRIPTION", "DATE")
    for item in items:
        grid.add_row(item.get("name", ""), item.get("owner", ""), item.get("description", ""), item.get("date", ""))
    console().print(grid)
    return ExitCode.OK
