"""Plain SQL for the few statements every API call or every poll makes.

The ORM compiles a statement anew each time it runs; for the hottest ones that costs more CPU than the
database spends on them. Here:

- `insert_one` INSERTs a row with a statement built once per model and database; each row only prepares its
  values, with the fields' own `pre_save` and `get_db_prep_save`, as `Model.save()` does. For models whose
  primary key the database assigns and that no pre_save/post_save receiver listens to: no signal is sent.
- `model_columns` and `model_from_row` read a model instance from a hand-written SELECT, converting each
  value with the backend's and the field's converters, as a queryset does (SQLite returns naive datetimes
  and integers for booleans, for instance). `read_with` reads one row with the row a foreign key of it points
  to, in one SELECT built once: the worker reads a job with its connection so for every submission and fetch.
- `update_each` UPDATEs many rows in one statement, each row to values of its own, only where each row still
  holds what the caller read (its state, for instance): the sweep writes all the polls of a sweep that found
  their jobs still running in one statement instead of one per job.

Each statement here is tested against the ORM's answer (tests/test_fastsql.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
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
    """INSERT `instance` as a new row and set its primary key; returns it."""
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
