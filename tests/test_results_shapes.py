"""describe_result and the rows of each shape (jobs.results.bodies), on bodies as OML sends them."""

import json

import pytest

from jobs.results.bodies import bytes_source, describe_result, iter_rows, peek_shape

GROUPS = {
    "versicolor_8": {"SEPAL_LENGTH": {"0": 5.7}, "SPECIES": {"0": "versicolor"}, "COUNT": {"0": 5}},
    "setosa_1": {
        "SEPAL_LENGTH": {"0": 4.3, "1": 4.4},
        "SPECIES": {"0": "setosa", "1": "setosa"},
        "COUNT": {"0": 1, "1": 2},
    },
}


def body(value) -> bytes:
    return json.dumps({"result": value}).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (body([{"A": 1, "B": "x"}, {"A": 2.5, "C": None}]), ("records", 2)),
        (body(GROUPS), ("groups", 3)),
        (body([7.2032449344, 4.36, 5.5]), ("list", 3)),
        (body([{"IMAGE": "iVBOR", "DATA": "[]", "ID": 1}]), ("graphics", 1)),
        (body({"model": {"coef": [1.5, -2]}, "n": 150}), ("object", 3)),
        (body(42.5), ("scalar", 1)),
        (body(None), ("scalar", 1)),
        (body("text"), ("scalar", 1)),
        (body([]), ("list", 0)),
        (body({}), ("object", 0)),
        (b"[1, 2]", ("list", 2)),
        (b'{"errorCode": 1024, "errorMessage": "Output exceeds maximum length 5000"}', ("object", 2)),
    ],
)
def test_describe_result_names_the_shape_and_counts_the_rows(raw, expected):
    assert describe_result(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b'{"result": [1, 2', b'{"result": 1} trailing', b"\xff\xfe\x00", b'{"result": NaN}', b"<html>"],
)
def test_describe_result_calls_a_body_that_is_not_json_text_without_raising(raw):
    assert describe_result(raw) == ("text", None)


def test_describe_result_reads_a_body_given_as_chunks_split_anywhere():
    raw = body([{"NAME": "é" * 3, "N": i} for i in range(50)])
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    assert describe_result(chunks) == ("records", 50)


def test_group_apply_rows_carry_their_group_label_in_the_order_sent():
    rows = list(iter_rows(bytes_source(body(GROUPS)), "groups"))
    assert rows == [
        ("versicolor_8", {"SEPAL_LENGTH": 5.7, "SPECIES": "versicolor", "COUNT": 5}),
        ("setosa_1", {"SEPAL_LENGTH": 4.3, "SPECIES": "setosa", "COUNT": 1}),
        ("setosa_1", {"SEPAL_LENGTH": 4.4, "SPECIES": "setosa", "COUNT": 2}),
    ]


def test_object_rows_are_leaves_named_by_json_pointer():
    rows = list(iter_rows(bytes_source(body({"a/b": {"c": [1, {}]}, "d": None})), "object"))
    assert rows == [("/a~1b/c/0", {"value": 1}), ("/a~1b/c/1", {"value": {}}), ("/d", {"value": None})]


@pytest.mark.parametrize(
    ("raw", "shape"),
    [
        (body([{"A": 1}, 2]), "records"),
        (body([{"IMAGE": "x", "DATA": "1", "ID": 1}]), "graphics"),
        (body([1, {"A": 1}]), "list"),
        (body(GROUPS), "groups"),
        (body({"a": 1, "b": {"c": {"0": 1}}}), "object"),
        (body(3), "scalar"),
        (b"nope", "text"),
    ],
)
def test_a_body_stored_without_a_shape_is_judged_by_its_first_item(raw, shape):
    assert peek_shape(bytes_source(raw)) == shape


def test_rows_that_do_not_fit_the_judged_shape_still_come_out():
    raw = body({**GROUPS, "odd": 5})
    rows = list(iter_rows(bytes_source(raw), "groups"))
    assert rows[-1] == ("odd", {"value": 5})
    assert len(rows) == 4
    assert list(iter_rows(bytes_source(body([{"A": 1}, 2])), "records")) == [(1, {"A": 1}), (2, {"value": 2})]
