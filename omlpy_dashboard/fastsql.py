"""Every statement of the project written in SQL rather than through the ORM, and why each one is.

Everything else uses the ORM. A statement is here for speed only where a benchmark showed that the ORM's own
way costs more than a tenth of the CPU of an operation a performance target of DESIGN.md is measured on;
each one says what it saved, and tests/test_fastsql.py compares each answer with the ORM's on SQLite and on
PostgreSQL. BENCHMARKS.md ("Raw SQL: what stays and why") lists them with the figures.

On the project's 2-core benchmark machine a queryset costs 0.3 to 0.7 ms of CPU to compile and read, against
0.05 to 0.12 ms for the same statement written once: `bench/submit.py --statements` measures both per call.

For speed, on the path of every API submission (target: ≥ 200/s through the API):

- `token_and_user`: the Bearer token with its user (accounts.tokens.token_lookup).
- `membership_rows`: the user's teams, roles and granted connections (jobs.selectors.access.memberships).
- `audit_head`: the audit chain's newest entry, under the chain's lock (audit.services.audit_record).
- `insert_one`: INSERTs a row with a statement built once per model and database; each row only prepares its
  values, with the fields' own `pre_save` and `get_db_prep_save`, as `Model.save()` does. For models whose
  primary key the database assigns and that no pre_save/post_save receiver listens to: no signal is sent.
  Audit entries, jobs and their transitions are written with it.
- `add_to_rows`: adds to counters, creating the rows seen for the first time (metrics.store.flush, at the end
  of every request, task and sweep that recorded anything).

Through the ORM, each of them costs 4 to 7.5 % of a submission's web CPU (8.8 ms); all of them with the default
connection (3 %) 2.3 ms more, 42 % of a submission in-process, 47 % of the web CPU per submission of
bench/submit.py. The default connection and the metrics flush together, the two cheapest, already cost 14.5 %
(15 % in bench/submit.py). What the ORM's way costs, together, is kept under a tenth of the operation's CPU:
the default connection alone reads through the ORM (and the tally of jobs.services.tally, under 2 % of what a worker
spends per job); the others stay here. BENCHMARKS.md has the figures.

`model_columns` and `model_from_row` read model instances from a hand-written SELECT, converting each value
with the backend's and the field's converters, as a queryset does (SQLite returns naive datetimes and integers
for booleans, for instance).

For speed, on the worker's path (target: worker CPU per tracked job):

- `read_with` reads one row with the row a foreign key of it points to, in one SELECT built once: the
  worker reads a job with its connection so for every submission and fetch.
- `update_each` UPDATEs many rows in one statement, each row to values of its own, only where each row still
  holds what the caller read (its state, for instance): the sweep writes all the polls of a sweep that found
  their jobs still running in one statement instead of one per job.

PostgreSQL only, for locking rather than speed (the ORM has no way to say them):

- `advisory_xact_lock`: the transaction-scoped advisory lock that serializes the audit chain's appends.
- `lock_table_exclusive`: holds the writes to a table while it is recounted (jobs.services.tally.tally_rebuild).

Outside this module, and not for speed: the migrations that create the audit trail's append-only triggers and
fill new columns, the health check's `SELECT 1`, and the benchmarks' own fills and plans in bench/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connections, models


@cache
def _statement(model: type[models.Model], alias: str) -> tuple[str, tuple[models.Field, ...], bool]:
    connection = connections[alias]
    meta = model._meta
    pk = meta.pk
    fields = tuple(field for field in meta.concrete_fields if field is not pk)
    quote = connection.ops.quote_name
    returning = connection.features.can_return_columns_from_insert
    sql = "INSERT INTO {} ({}) VALUES ({}){}".format(  # noqa: S608 - names from the model, values as parameters
        quote(meta.db_table),
        ", ".join(quote(field.column) for field in fields),
        ", ".join(["%s"] * len(fields)),
        f" RETURNING {quote(pk.column)}" if returning else "",
    )
    return sql, fields, returning


def insert_one(instance: models.Model, using: str = "default") -> models.Model:
    """INSERT `instance` as a new row and set its primary key; returns it.

    The audit entry and the job of every submission (see audit_head for what the audit append saves)."""
    model = type(instance)
    if not model._meta.pk.db_returning:
        raise TypeError(f"{model.__name__}: the database must assign the primary key")
    if instance.pk is not None:
        raise ValueError(f"{model.__name__} {instance.pk} is already saved")
    connection = connections[using]
    sql, fields, returning = _statement(model, using)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = using
    return instance


@cache
def _readers(model: type[models.Model], alias: str) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    connection = connections[alias]
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        column = field.get_col(model._meta.db_table)
        converters.append(
            (column, tuple(connection.ops.get_db_converters(column) + field.get_db_converters(connection)))
        )
    return tuple(field.attname for field in fields), tuple(converters)


def model_columns(model: type[models.Model], table_alias: str, using: str = "default") -> str:
    """The SELECT list of `model`'s columns, qualified by `table_alias`, in the order model_from_row reads."""
    quote = connections[using].ops.quote_name
    return ", ".join(f"{table_alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


def model_from_row(model: type[models.Model], values: Sequence[Any], using: str = "default") -> models.Model:
    """An instance of `model` from the values of model_columns(model, ...), converted as a queryset would."""
    connection = connections[using]
    names, readers = _readers(model, using)
    converted = []
    for value, (column, converters) in zip(values, readers, strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(using, names, converted)


@cache
def _read_statement(model: type[models.Model], relation: str, where: tuple[str, ...], alias: str) -> str:
    related = model._meta.get_field(relation).related_model
    quote = connections[alias].ops.quote_name
    conditions = " AND ".join(f"m.{quote(model._meta.get_field(name).column)} = %s" for name in where)
    return (
        f"SELECT {model_columns(model, 'm', alias)}, {model_columns(related, 'r', alias)} "  # noqa: S608 - model names
        f"FROM {quote(model._meta.db_table)} m JOIN {quote(related._meta.db_table)} r "
        f"ON r.{quote(related._meta.pk.column)} = m.{quote(model._meta.get_field(relation).column)} "
        f"WHERE {conditions}"
    )


def read_with(model: type[models.Model], relation: str, using: str = "default", **where: Any) -> models.Model | None:
    """The one row of `model` whose columns equal `where` (None if there is none), with the row its foreign key
    `relation` points to set on it, as `select_related(relation)` would give them."""
    connection = connections[using]
    names = tuple(where)
    params = [model._meta.get_field(name).get_db_prep_value(where[name], connection) for name in names]
    with connection.cursor() as cursor:
        cursor.execute(_read_statement(model, relation, names, using), params)
        row = cursor.fetchone()
    if row is None:
        return None
    field = model._meta.get_field(relation)
    split = len(model._meta.concrete_fields)
    instance = model_from_row(model, row[:split], using)
    setattr(instance, field.name, model_from_row(field.related_model, row[split:], using))
    return instance


def _db_cast(field: models.Field, connection) -> str:
    """The SQL type a VALUES column is cast to: PostgreSQL types the columns of VALUES from their first row
    (a NULL there would make a text column), SQLite stores what it is given (a CAST would change it)."""
    if connection.vendor != "postgresql":
        return "%s"
    db_type = field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
    return f"CAST(%s AS {db_type})"


def update_each(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    fields: Sequence[str],
    add: Sequence[str] = (),
    where: Mapping[str, Any] | None = None,
    using: str = "default",
) -> int:
    """UPDATE many rows of `model` in one statement, each to values of its own; returns how many changed.

    Each item of `rows` names its row by "pk" and holds a value for every one of `fields` (set to it) and of
    `add` (added to the column: a counter). Only rows that still match `where` (column: value, the same for
    every row) change: a row that moved on since the caller read it is left as it is. One row may be named
    only once (ValueError otherwise, writing nothing); at most the backend's parameter limit per statement
    (the caller splits longer lists, see `update_each_limit`).
    """
    if not rows:
        return 0
    where = dict(where or {})
    connection = connections[using]
    meta = model._meta
    quote = connection.ops.quote_name
    set_fields = [meta.get_field(name) for name in fields]
    add_fields = [meta.get_field(name) for name in add]
    keys = [row["pk"] for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{model.__name__}: a row is named more than once in one update")
    if len(rows) > update_each_limit(len(fields) + len(add), using):
        raise ValueError(f"{model.__name__}: too many rows for one statement")
    columns = [meta.pk, *set_fields, *add_fields]
    # VALUES names its columns column1, column2, ... on both databases.
    names = [f"column{index + 1}" for index in range(len(columns))]
    template = "({})".format(", ".join(_db_cast(field, connection) for field in columns))
    params: list[Any] = []
    for row in rows:
        params.append(meta.pk.get_db_prep_save(row["pk"], connection))
        params.extend(field.get_db_prep_save(row[field.name], connection) for field in set_fields)
        params.extend(field.get_db_prep_save(row[field.name], connection) for field in add_fields)
    table = quote(meta.db_table)
    offset = 1 + len(set_fields)
    assignments = [f"{quote(field.column)} = v.{names[1 + i]}" for i, field in enumerate(set_fields)]
    assignments += [
        f"{quote(field.column)} = {table}.{quote(field.column)} + v.{names[offset + i]}"
        for i, field in enumerate(add_fields)
    ]
    conditions = [f"{table}.{quote(meta.pk.column)} = v.{names[0]}"]
    for name, value in where.items():
        field = meta.get_field(name)
        conditions.append(f"{table}.{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    sql = "UPDATE {} SET {} FROM (VALUES {}) AS v WHERE {}".format(  # noqa: S608 - names from the model
        table,
        ", ".join(assignments),
        ", ".join([template] * len(rows)),
        " AND ".join(conditions),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update_each_limit(columns: int, using: str = "default") -> int:
    """How many rows of `columns` values (besides the primary key) one update_each statement may hold."""
    connection = connections[using]
    if connection.vendor == "sqlite":
        # The library's own limit (32766 since SQLite 3.32), not Django's conservative 999.
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    else:
        limit = connection.features.max_query_params or 65535
    return max(1, (limit - 16) // (columns + 1))


def token_and_user(
    token_model: type[models.Model], user_model: type[models.Model], key_hash: str, stale_before: datetime
) -> tuple[bool, models.Model, models.Model] | None:
    """The unrevoked token whose hash is `key_hash`, of an active user, with that user, and whether it was last
    used before `stale_before` (or never); None when there is none.

    Every API call asks. Measured: 0.12 ms per call against 0.71 ms with select_related, 6.7 % of the web CPU
    of a submission (bench/submit.py --statements)."""
    user_table = user_model._meta.db_table
    token_table = token_model._meta.db_table
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"SELECT t.last_used_at IS NULL OR t.last_used_at < %s, {model_columns(token_model, 't')}, "  # noqa: S608
            f"{model_columns(user_model, 'u')} "
            f"FROM {user_table} u JOIN {token_table} t ON t.user_id = u.id "
            "WHERE t.key_hash = %s AND t.revoked_at IS NULL AND u.is_active",
            [stale_before, key_hash],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    stale, *values = row
    width = len(token_model._meta.concrete_fields)
    return bool(stale), model_from_row(token_model, values[:width]), model_from_row(user_model, values[width:])


def membership_rows(
    membership_model: type[models.Model], team_model: type[models.Model], grant_model: type[models.Model], user_id
) -> list[tuple[int, str, str, bool, int | None]]:
    """(team id, team name, role, shares history, granted connection id or None) for each of the user's teams
    and each connection granted to it (`grant_model`: the through table of the grants), ordered by team name.

    Every request with a user asks. Measured: 0.06 ms per call against 0.70 ms for the same rows through the
    ORM, 7.4 % of the web CPU of a submission (bench/submit.py --statements)."""
    meta = grant_model._meta
    grants = meta.db_table
    grant_connection = meta.get_field("connection").column
    grant_team = meta.get_field("team").column
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"SELECT m.team_id, t.name, m.role, t.shares_history, g.{grant_connection} "  # noqa: S608 - names only
            f"FROM {membership_model._meta.db_table} m JOIN {team_model._meta.db_table} t ON t.id = m.team_id "
            f"LEFT JOIN {grants} g ON g.{grant_team} = m.team_id "
            "WHERE m.user_id = %s ORDER BY t.name, t.id",
            [user_id],
        )
        return [(team, name, role, bool(shares), granted) for team, name, role, shares, granted in cursor.fetchall()]


def audit_head(entry_model: type[models.Model]) -> tuple[str, str] | None:
    """(entry_hash, key_id) of the newest audit entry; None when there is none.

    Every audited action asks, under the chain's lock. Measured with insert_one for the entry: 0.38 ms per
    append against 0.86 ms with a queryset and Model.save(), 5.5 % of the web CPU of a submission
    (bench/submit.py --statements)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT entry_hash, key_id FROM {entry_model._meta.db_table} ORDER BY id DESC LIMIT 1")  # noqa: S608
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


# Rows per statement of add_to_rows: well inside SQLite's and PostgreSQL's limits on parameters.
_ROWS_PER_STATEMENT = 300


def add_to_rows(
    model: type[models.Model], key: Sequence[str], amounts: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Add to the rows of `model` named by the columns `key` (a unique constraint's) the values of the columns
    `amounts`, creating the rows that do not exist yet: one INSERT .. ON CONFLICT DO UPDATE for up to 300 rows.
    Each row of `rows` gives the key's values, then the amounts'. Rows are written in the order given.

    The metrics' flush (metrics.store.flush): at the end of every request, task and sweep that recorded
    anything. Measured: 0.10 ms for a request's one series and 0.35 ms for a sweep's two dozen, against 0.52 and
    3.7 ms through the ORM (an UPDATE per series, and an INSERT for a new one); with the default connection
    through the ORM as well, a submission cost 14.5 % more CPU (bench/submit.py --statements).
    """
    if not rows:
        return
    connection = connections["default"]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(name) for name in (*key, *amounts))
    updates = ", ".join(f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in amounts)
    one_row = "(" + ", ".join(["%s"] * (len(key) + len(amounts))) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            part = rows[start : start + _ROWS_PER_STATEMENT]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * len(part))} "  # noqa: S608 - names only
                f"ON CONFLICT ({', '.join(quote(name) for name in key)}) DO UPDATE SET {updates}",
                [value for row in part for value in row],
            )


def advisory_xact_lock(key: int, using: str = "default") -> None:
    """PostgreSQL only: take the transaction-scoped advisory lock `key`, waiting for it; released at the end of
    the transaction."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def lock_table_exclusive(model: type[models.Model], using: str = "default") -> None:
    """PostgreSQL only: lock `model`'s table in EXCLUSIVE mode (reads go on, writes wait) until the end of the
    transaction."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {connection.ops.quote_name(model._meta.db_table)} IN EXCLUSIVE MODE")
