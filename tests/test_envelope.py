from datetime import datetime, timezone

import pytest

from streams.envelope import (BadDate, EventTooLarge, InvalidField, MissingField, NotAnObject, NotJson,
                              decode_event, iso_utc, parse_date, to_micros)

UTC = timezone.utc


@pytest.mark.parametrize("text, expected", [
    # the seed's .NET round-trip format: seven fraction digits, truncated to microseconds
    ("2016-06-13T20:10:53.4628857Z", datetime(2016, 6, 13, 20, 10, 53, 462885, UTC)),
    ("2016-06-13T20:10:53Z", datetime(2016, 6, 13, 20, 10, 53, 0, UTC)),
    # Push API: yyyy-MM-ddTHH:mm:ss.fffZ and .fffzzz
    ("2016-06-13T20:10:53.123Z", datetime(2016, 6, 13, 20, 10, 53, 123000, UTC)),
    ("2016-06-13T16:10:53.123-04:00", datetime(2016, 6, 13, 20, 10, 53, 123000, UTC)),
    ("2016-06-14T01:40:53.5+05:30", datetime(2016, 6, 13, 20, 10, 53, 500000, UTC)),
    ("2016-06-14T01:40:53+0530", datetime(2016, 6, 13, 20, 10, 53, 0, UTC)),
    ("2016-06-13T23:10:53+03", datetime(2016, 6, 13, 20, 10, 53, 0, UTC)),
    ("2016-12-31T23:30:00.000-01:00", datetime(2017, 1, 1, 0, 30, 0, 0, UTC)),  # crosses a year
])
def test_dates_normalised_to_utc(text, expected):
    got = parse_date(text)
    assert got == expected
    assert got.tzinfo == UTC


@pytest.mark.parametrize("text", ["2016-06-13T20:10:53", "13/06/2016", "2016-13-01T00:00:00Z",
                                  "2016-02-30T00:00:00Z", "", "2016-06-13T20:10:53+25:00", 1465848653, None])
def test_bad_dates_refused(text):
    with pytest.raises(BadDate):
        parse_date(text)


def test_naive_date_error_says_what_is_missing():
    with pytest.raises(BadDate, match="no UTC designator"):
        parse_date("2016-06-13T20:10:53.123")


def test_micros_and_iso():
    d = parse_date("2016-06-13T20:10:53.4628857Z")
    assert to_micros(d) == 1465848653462885
    assert iso_utc(d) == "2016-06-13T20:10:53.462885Z"


GOOD = b'{"ActivityKey":"k","ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"}'


@pytest.mark.parametrize("raw, error, fragment", [
    (b"\xff\xfe garbage", NotJson, "UTF-8"),
    (b"{not json", NotJson, "not JSON"),
    (b"[1, 2]", NotAnObject, "array"),
    (b'"text"', NotAnObject, "string"),
    (b'{"ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"}', MissingField, "ActivityKey"),
    (b'{"ActivityKey":5,"ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"}',
     InvalidField, "ActivityKey must be a string"),
    (b'{"ActivityKey":" ","ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"}',
     InvalidField, "empty"),
    (None, NotJson, "empty"),
])
def test_malformed_events(raw, error, fragment):
    with pytest.raises(error, match=fragment):
        decode_event(raw, 1 << 20)


def test_size_limit_checked_before_parsing():
    with pytest.raises(EventTooLarge, match="limit is 100"):
        decode_event(GOOD + b" " * 100, 100)
    assert decode_event(GOOD, 1 << 20)["ActivityKey"] == "k"
