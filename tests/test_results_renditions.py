"""CSV renditions (jobs.results.renditions): a result's first CSV download writes the CSV from its body and stores it
beside the result; later downloads send the stored bytes. Those bytes are the one-pass CSV's, on every result
shape; two first downloads at once store one rendition; a download that stops stores nothing; a rendition
left by a writer that died is written again once stale; a rendition goes with its result."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.utils import timezone

from jobs.models import Job, JobResult, JobResultChunk, JobResultRendition, JobResultRenditionChunk
from jobs.results.bodies import bytes_source, describe_body, header_of
from jobs.results.export import csv_chunks, download_response
from jobs.results.renditions import RENDITION_VERSIONS
from jobs.services.retention import purge
from jobs.states import JobKind
from tests.results_support import finish_async, make_job, store_result, succeeded_job_with_result
from tests.test_results_one_pass import BODIES, LINK, body, two_pass_csv

# Beside the shapes of the one-pass tests: what spreadsheets and JSON make hard in a single cell.
MORE_BODIES = {
    "formula-like cells": body(
        [
            {"a": "=1+1", "b": "@x", "c": "+", "d": "-", "e": "ünïcødé ✓ 中文", "f": None, "g": True, "h": False},
            {"a": "+1", "b": "-2", "c": "@", "d": "=", "e": LINK, "i": 0, "j": -0.5, "k": 10**20},
        ]
    ),
    "a dict of columns": body({"A": {"0": 1, "1": 2}, "B": {"0": "=x", "1": None}, "C": {"0": True, "1": 1.5}}),
    "nested values": body([{"a": {"b": [1, {"c": None}]}, "d": [[]], "e": {}}, {"a": [True, "=1"], "d": "x"}]),
    # json.dumps writes NaN and Infinity for such floats, as a Python script's result may hold them.
    "NaN and infinity": json.dumps({"result": [{"x": float("nan"), "y": float("inf"), "z": None}]}).encode(),
    "scalar true": body(True),
    "scalar integer": body(7),
    "scalar formula": body("@SUM(A1)"),
    "list of booleans and nulls": body([True, False, None, "-", "+"]),
}
ALL_BODIES = {**BODIES, **MORE_BODIES}


def one_pass_csv(raw: bytes) -> bytes:
    """The CSV as the download writes it from the body (one pass, the columns recorded when stored)."""
    described = describe_body(raw)
    header = header_of(described.shape, described.columns) if described.columns is not None else None
    return b"".join(csv_chunks(bytes_source(raw), described.shape, header))


def get_csv(client, job):
    response = client.get(f"/jobs/{job.uuid}/result.csv")
    assert response.status_code == 200
    return response


def content(response) -> bytes:
    return b"".join(response.streaming_content)


def stored(job) -> bytes:
    rendition = JobResultRendition.objects.get(result__job=job, format="csv")
    assert rendition.completed_at is not None
    data = b"".join(bytes(d) for d in rendition.chunks.order_by("seq").values_list("data", flat=True))
    assert (len(data), rendition.chunk_count) == (rendition.size_bytes, rendition.chunks.count())
    return data


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(ALL_BODIES))
def test_the_stored_csv_equals_the_one_pass_csv_byte_for_byte(signed_in, analyst, settings, name):
    settings.JOBS_RESULT_CHUNK_BYTES = 64  # a rendition of many chunks
    raw = ALL_BODIES[name]
    expected = one_pass_csv(raw)
    assert expected == two_pass_csv(raw, describe_body(raw).shape)
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)

    first = get_csv(signed_in, job)
    assert "Content-Length" not in first  # written from the body while it is sent
    assert content(first) == expected
    assert stored(job) == expected

    repeat = get_csv(signed_in, job)
    assert repeat["Content-Length"] == str(len(expected))  # the stored rendition
    assert content(repeat) == expected
    assert repeat["Content-Type"] == first["Content-Type"]
    assert repeat["Content-Disposition"] == first["Content-Disposition"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["records", "groups as frames", "list", "object", "text", "graphics"])
def test_a_result_stored_before_renditions_and_columns_downloads_the_same_bytes(signed_in, analyst, name):
    raw = BODIES[name]
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY, with_columns=False)
    assert not JobResultRendition.objects.exists()
    expected = two_pass_csv(raw, describe_body(raw).shape)
    assert content(get_csv(signed_in, job)) == expected
    assert stored(job) == expected
    assert content(get_csv(signed_in, job)) == expected


def many_rows() -> bytes:
    # A CSV of several pieces (jobs.results.export.CSV_FLUSH_BYTES each), so that a download can be held mid-way.
    return body([{"N": i, "T": f"=row {i}" if i % 50 == 0 else f"row {i}, text", "F": i / 3} for i in range(12000)])


@pytest.mark.django_db
def test_two_first_downloads_at_once_store_one_rendition(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 4096
    raw = many_rows()
    expected = one_pass_csv(raw)
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)

    first = get_csv(signed_in, job)
    pieces = iter(first.streaming_content)
    head = next(pieces)
    # The first download has claimed the rendition and is writing it: the second one finds it incomplete,
    # writes its CSV from the body and stores nothing.
    writing = JobResultRendition.objects.get(result__job=job)
    assert writing.completed_at is None
    second = get_csv(signed_in, job)
    assert "Content-Length" not in second
    assert content(second) == expected
    assert JobResultRendition.objects.get(result__job=job).pk == writing.pk
    assert JobResultRendition.objects.get(pk=writing.pk).completed_at is None

    assert head + b"".join(pieces) == expected
    assert JobResultRendition.objects.count() == 1
    assert stored(job) == expected
    assert content(get_csv(signed_in, job)) == expected


@pytest.mark.django_db
def test_a_download_that_stops_half_way_stores_nothing_and_the_next_one_stores_it_whole(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 4096
    raw = many_rows()
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    # The response the download view answers with, as the server holds it while sending it.
    stopped = download_response(job, job.result, "csv")
    pieces = iter(stopped.streaming_content)
    next(pieces)
    assert JobResultRenditionChunk.objects.exists()
    # The client went away: the server closes the response. (The database connection is kept open, as Django's
    # test client keeps it when it closes a response: it holds the test's transaction.)
    request_finished.disconnect(close_old_connections)
    try:
        stopped.close()
    finally:
        request_finished.connect(close_old_connections)
    assert not JobResultRendition.objects.exists()
    assert not JobResultRenditionChunk.objects.exists()

    assert content(get_csv(signed_in, job)) == one_pass_csv(raw)
    assert stored(job) == one_pass_csv(raw)


@pytest.mark.django_db
def test_a_response_closed_before_its_first_piece_claims_nothing(signed_in, analyst):
    job = succeeded_job_with_result(analyst, BODIES["records"], kind=JobKind.TABLE_APPLY)
    unsent = download_response(job, job.result, "csv")  # as for a HEAD request: never iterated
    request_finished.disconnect(close_old_connections)
    try:
        unsent.close()
    finally:
        request_finished.connect(close_old_connections)
    assert not JobResultRendition.objects.exists()
    first = get_csv(signed_in, job)
    assert content(first) == one_pass_csv(BODIES["records"])
    assert stored(job) == one_pass_csv(BODIES["records"])


@pytest.mark.django_db
def test_a_rendition_whose_writer_died_is_written_again_once_stale(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 4096
    raw = many_rows()
    expected = one_pass_csv(raw)
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    abandoned = get_csv(signed_in, job)
    pieces = iter(abandoned.streaming_content)
    head = next(pieces)
    # Its writer stores nothing more, as if its process had died: once stale, the next download takes it over.
    earlier = timezone.now() - timedelta(seconds=settings.JOBS_RENDITION_STALE + 1)
    JobResultRendition.objects.update(written_at=earlier)
    old_id = JobResultRendition.objects.get().pk

    assert content(get_csv(signed_in, job)) == expected
    assert not JobResultRendition.objects.filter(pk=old_id).exists()
    assert not JobResultRenditionChunk.objects.filter(rendition_id=old_id).exists()
    assert stored(job) == expected

    # The first writer, were it alive after all, finds its rendition gone: it sends its file whole and stores
    # nothing more, leaving the new rendition as it is.
    assert head + b"".join(pieces) == expected
    assert JobResultRendition.objects.count() == 1
    assert stored(job) == expected


@pytest.mark.django_db
def test_a_rendition_being_written_recently_is_not_taken_over(signed_in, analyst, settings):
    raw = many_rows()
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    writing = get_csv(signed_in, job)
    pieces = iter(writing.streaming_content)
    head = next(pieces)
    claimed = JobResultRendition.objects.get()
    assert content(get_csv(signed_in, job)) == one_pass_csv(raw)
    assert JobResultRendition.objects.get().pk == claimed.pk
    assert head + b"".join(pieces) == one_pass_csv(raw)


@pytest.mark.django_db
def test_a_rendition_of_another_writer_version_is_written_again(signed_in, analyst):
    raw = BODIES["records"]
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    content(get_csv(signed_in, job))
    JobResultRendition.objects.update(version=RENDITION_VERSIONS["csv"] + 1)
    JobResultRenditionChunk.objects.update(data=b"written by another version")
    again = get_csv(signed_in, job)
    assert "Content-Length" not in again
    assert content(again) == one_pass_csv(raw)
    assert JobResultRendition.objects.get().version == RENDITION_VERSIONS["csv"]
    assert stored(job) == one_pass_csv(raw)


@pytest.mark.django_db
def test_a_replaced_result_takes_its_rendition_with_it(signed_in, analyst):
    job = succeeded_job_with_result(analyst, BODIES["records"], kind=JobKind.TABLE_APPLY)
    content(get_csv(signed_in, job))
    store_result(job, BODIES["list"])
    assert not JobResultRendition.objects.exists()
    assert not JobResultRenditionChunk.objects.exists()
    assert content(get_csv(signed_in, job)) == one_pass_csv(BODIES["list"])


def old_job_with_rendition(client, owner, days: float) -> Job:
    job = make_job(owner, kind=JobKind.TABLE_APPLY)
    created = timezone.now() - timedelta(days=days)
    finish_async(job, created=created, queue=1, oml=10, fetch=1)
    store_result(job, BODIES["records"], chunk_size=16)
    assert content(get_csv(client, job)) == one_pass_csv(BODIES["records"])
    JobResult.objects.filter(job=job).update(stored_at=created + timedelta(seconds=12))
    return job


@pytest.mark.django_db
def test_retention_removes_the_rendition_with_the_result(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 64
    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    expired = old_job_with_rendition(signed_in, analyst, days=40)
    kept = old_job_with_rendition(signed_in, analyst, days=10)
    assert JobResultRendition.objects.count() == 2

    report = purge()
    assert report.results == 1
    assert not JobResult.objects.filter(job=expired).exists()
    assert not JobResultRendition.objects.filter(result__job=expired).exists()
    assert set(JobResultRenditionChunk.objects.values_list("rendition__result__job", flat=True)) == {kept.pk}
    assert stored(kept) == one_pass_csv(BODIES["records"])
    assert signed_in.get(f"/jobs/{expired.uuid}/result.csv").status_code == 410


@pytest.mark.django_db
def test_retention_removes_the_rendition_with_the_job(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 64
    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 0, 30
    expired = old_job_with_rendition(signed_in, analyst, days=40)
    kept = old_job_with_rendition(signed_in, analyst, days=10)

    report = purge()
    assert report.jobs == 1
    assert not Job.objects.filter(pk=expired.pk).exists()
    assert JobResultRendition.objects.get().result.job_id == kept.pk
    assert JobResultChunk.objects.filter(result__job=kept).exists()
    assert set(JobResultRenditionChunk.objects.values_list("rendition__result__job", flat=True)) == {kept.pk}
