"""Counters kept in a table: add to a row, creating it the first time."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import F


def add_to_row(model: type[models.Model], key: dict[str, Any], amounts: dict[str, Any]) -> None:
    """Add `amounts` to the row of `model` named by `key` (a unique constraint's fields), creating it when
    there is none; in the caller's transaction."""
    increments = {name: F(name) + amount for name, amount in amounts.items()}
    if model._default_manager.filter(**key).update(**increments):
        return
    try:
        with transaction.atomic():
            model._default_manager.create(**key, **amounts)
    except IntegrityError:
        # Created meanwhile by another transaction, which has committed: add to it.
        model._default_manager.filter(**key).update(**increments)
