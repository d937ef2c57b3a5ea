"""Plain SQL for the few statements every API call or every poll makes.

The ORM compiles a statement anew each time it runs; for the hottest ones that costs more CPU than the
database spends on them. Here:

- `insert_one` INSERTs a row with a statement built once per model and database; each row only prepares its
  values, with the fields' own `pre_save` and `get_db_prep_save`, as `Model.save()` does. For models whose
  primary key the database assigns and that no pre_save/post_save receiver listens to: no signal is sent.
- `model_columns` and `model_from_row` read a model instance from a hand-written SELECT, converting each
  value with the backend's and the field's converters, as a queryset does (SQLite returns naive datetimes
  and integers for booleans, for instance).
"""

from __future__ import annotations

from collections.abc import Sequence
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
