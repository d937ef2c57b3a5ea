"""Renditions: a stored result written out in a download format once, on its first download, and kept beside it.

Writing a CSV formats every value of the result in Python, 7-20 times the cost of copying the stored body
(BENCHMARKS.md). So the first CSV download of a result writes the file while it sends it, and stores the same
bytes in chunks beside the body (JobResultRendition, JobResultRenditionChunk); every later download copies
those chunks as the JSON download copies the body. Only results someone downloads pay for their rendition;
the worker storing a result does nothing more.

- Two first downloads at once: one claims the rendition (a row unique per result and format) and writes it,
  the other is written from the body as before and stores nothing. A rendition is sent only once complete.
- A download that stops half-way (the client left, the writer failed) removes what it wrote. One whose process
  died leaves a partial rendition: it is never sent, and the next download writes it again once its writer has
  stored nothing for JOBS_RENDITION_STALE seconds.
- A rendition goes with its result: a replaced, purged or deleted result takes its renditions with it
  (the foreign key cascades, and retention removes them explicitly beside the body's chunks).
- A rendition written by another version of the writer (RENDITION_VERSIONS) is written again, not sent.
- Results stored before renditions existed simply have none: their first download writes one.

The pieces of the first download are held until a chunk of JOBS_RESULT_CHUNK_BYTES is full, then stored: memory
holds one chunk, whatever the result's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jobs.models import JobResult, JobResultRendition, JobResultRenditionChunk

logger = logging.getLogger(__name__)

# The formats kept as renditions, each with the version of its writer: raise it when the writer's bytes change,
# so that renditions written before are written again.
RENDITION_VERSIONS = {"csv": 1}


def rendition_chunks(
    result: JobResult, fmt: str, write: Callable[[], Iterable[bytes]]
) -> tuple[Iterator[bytes], int | None]:
    """The download of `result` in `fmt` and its size when known: the stored rendition when there is a complete
    one; otherwise the pieces of `write()`, stored as the rendition while they are sent if this download
    claims it. `write` is called only when the rendition is not stored, so whatever it reads first is read then."""
    version = RENDITION_VERSIONS[fmt]
    stored = (
        JobResultRendition.objects.filter(result=result, format=fmt, version=version, completed_at__isnull=False)
        .values_list("pk", "size_bytes")
        .first()
    )
    if stored is not None:
        return _stored_chunks(stored[0]), stored[1]
    return _written(result, fmt, version, write), None


def _stored_chunks(rendition_id: int) -> Iterator[bytes]:
    ids = list(
        JobResultRenditionChunk.objects.filter(rendition_id=rendition_id).order_by("seq").values_list("id", flat=True)
    )
    for chunk_id in ids:
        yield bytes(JobResultRenditionChunk.objects.filter(pk=chunk_id).values_list("data", flat=True).get())


def _claim(result: JobResult, fmt: str, version: int) -> int | None:
    """The id of a new, empty rendition this download is to write, or None when another download is writing it."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOBS_RENDITION_STALE)
    # Written by another version, or abandoned part-way by a process that died: removed, to be written again.
    renditions_delete(
        JobResultRendition.objects.filter(result=result, format=fmt).filter(
            ~Q(version=version) | Q(completed_at__isnull=True, written_at__lt=stale)
        )
    )
    try:
        with transaction.atomic():
            rendition = JobResultRendition.objects.create(result=result, format=fmt, version=version, written_at=now)
    except IntegrityError:
        return None  # another download claimed it first
    return rendition.pk


def _written(result: JobResult, fmt: str, version: int, write: Callable[[], Iterable[bytes]]) -> Iterator[bytes]:
    """The pieces of `write()`, stored in chunks as the rendition while they pass through if this download claims
    it (when its first piece is asked for: a response closed before, a HEAD request, claims nothing); the
    rendition is marked complete after its last chunk, or removed if the pieces stop early."""
    rendition_id = _claim(result, fmt, version)
    if rendition_id is None:
        yield from write()
        return
    chunk_size = settings.JOBS_RESULT_CHUNK_BYTES
    buffer = bytearray()
    seq = size = 0
    storing = True
    completed = False

    def store(data: bytes) -> bool:
        nonlocal seq
        try:
            with transaction.atomic():
                JobResultRenditionChunk.objects.create(rendition_id=rendition_id, seq=seq, data=data)
                # The writer's heartbeat; no row updated: the rendition was taken over (stale) or its result removed.
                alive = JobResultRendition.objects.filter(pk=rendition_id, completed_at__isnull=True).update(
                    written_at=timezone.now()
                )
                if not alive:
                    raise IntegrityError("the rendition is gone")
        except DatabaseError:
            logger.warning("rendition %s: not stored; this download goes on without it", rendition_id, exc_info=True)
            return False
        seq += 1
        return True

    try:
        for piece in write():
            if storing:
                buffer += piece
                size += len(piece)
                while storing and len(buffer) >= chunk_size:
                    storing = store(bytes(buffer[:chunk_size]))
                    del buffer[:chunk_size]
                if not storing:
                    buffer = bytearray()
            yield piece
        if storing and (buffer or seq == 0):
            storing = store(bytes(buffer))
        if storing:
            completed = bool(
                JobResultRendition.objects.filter(pk=rendition_id, completed_at__isnull=True).update(
                    completed_at=timezone.now(), size_bytes=size, chunk_count=seq
                )
            )
    finally:
        if not completed:
            _discard(rendition_id)


def _discard(rendition_id: int) -> None:
    try:
        renditions_delete(JobResultRendition.objects.filter(pk=rendition_id, completed_at__isnull=True))
    except DatabaseError:
        # Left partial: never sent, written again once stale, removed with its result.
        logger.warning("rendition %s: partial rendition not removed", rendition_id, exc_info=True)


def renditions_delete(renditions) -> int:
    """Remove the renditions of a queryset and their chunks (in the caller's transaction, if any); answers how many."""
    ids = list(renditions.values_list("pk", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        JobResultRenditionChunk.objects.filter(rendition_id__in=ids).delete()
        JobResultRendition.objects.filter(pk__in=ids).delete()
    return len(ids)


def results_renditions_delete(result_ids: Iterable[int]) -> int:
    """Remove every rendition of these results (retention, before it removes the results themselves)."""
    return renditions_delete(JobResultRendition.objects.filter(result_id__in=list(result_ids)))
