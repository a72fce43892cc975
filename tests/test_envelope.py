from datetime import datetime, timezone

import pytest

from core.envelope import (BadDate, EventTooLarge, InvalidField, MissingField, NotAnObject, NotJson,
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


def _with(prop: bytes) -> bytes:
    """GOOD with one more property, written as raw JSON text."""
    return GOOD[:-1] + b"," + prop + b"}"


def _key(key_json: bytes) -> bytes:
    return (b'{"ActivityKey":' + key_json +
            b',"ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"}')


@pytest.mark.parametrize("raw, error, fragment", [
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, NotJson, "nested deeper"),  # was a RecursionError
    (_with(b'"Deep":' + b"[" * 70 + b"1" + b"]" * 70), NotJson, "nested deeper"),
    (_with(b'"Body":"\\ud800"'), InvalidField, "lone surrogate"),          # was a UnicodeEncodeError
    (_key(b'"k\\ud800"'), InvalidField, "lone surrogate"),
    (_with(b'"\\udc00":"x"'), InvalidField, "lone surrogate"),
    (_with(b'"Score":NaN'), NotJson, "NaN"),
    (_with(b'"Score":-Infinity'), NotJson, "Infinity"),
    (_with(b'"Score":1e400'), NotJson, "overflows"),
    (_with(b'"Big":' + b"9" * 400), NotJson, "outside the 64-bit range"),   # was enriched and delivered
    (_with(b'"Big":9223372036854775808'), NotJson, "outside the 64-bit range"),
    (_with(b'"Big":-9223372036854775809'), NotJson, "outside the 64-bit range"),
    (_key(b'"k\\u0000x"'), InvalidField, "control character"),
    (_key(b'"k\\u0007"'), InvalidField, "control character"),
    (_with(b'"ActivityKey":"other"'), InvalidField, "appears twice"),
])
def test_hostile_events_get_a_documented_class(raw, error, fragment):
    with pytest.raises(error, match=fragment):
        decode_event(raw, 1 << 24)


def test_a_surrogate_pair_is_fine():
    assert decode_event(_with(b'"Body":"\\ud83d\\ude00"'), 1 << 20)["Body"] == "\U0001F600"


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_dates_that_overflow_with_their_offset_are_bad_dates(text):  # were OverflowError
    with pytest.raises(BadDate, match="out of range"):
        parse_date(text)


def test_whole_numbers_of_the_64_bit_range_are_kept():
    ev = decode_event(_with(b'"Big":9223372036854775807,"Small":-9223372036854775808'), 1 << 24)
    assert (ev["Big"], ev["Small"]) == (2 ** 63 - 1, -2 ** 63)


ENV = '"ActivityKey":"k","ActivityCode":"C","ActivityDate":"2016-06-13T20:10:53Z","TenantCode":"T"'


def _outcome(fn, raw):
    try:
        return ("ok", fn(raw))
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the class and the message
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("body", [
    '"A":1', '"A":1,"A":2', '"A":{"x":1,"x":2}', '"A":[{"x":1},{"y":2,"y":3}]',
    '"A":"a:b","A":"c"', '"A":"x\\u003ay","A":"z"', '"A":"x\\u003Ay"', '"a:b":1,"a:b":2',
    '"A":9223372036854775807', '"A":9223372036854775808', '"A":-9223372036854775808',
    '"A":-9223372036854775809', '"A":18446744073709551616', '"A":1e19', '"A":-1e19', '"A":1.5',
    '"A":1e999', '"A":NaN', '"A":"\\ud800"', '"A":"\\ud83d\\ude00"', '"A":' + "[" * 63 + "]" * 63,
    '"A":' + "[" * 64 + "]" * 64, '"A":' + "[" * 70 + "1" + "]" * 70, '"A" : 1 , "B" : "x"',
    '"A":"\\"quoted\\": yes"', '"A":null,"B":true,"C":[]',
])
def test_fast_parse_answers_exactly_what_the_strict_parser_answers(body):
    from core.envelope import decode_strict

    raw = ("{" + ENV + "," + body + "}").encode()
    assert _outcome(lambda r: decode_event(r, 1 << 20), raw) == _outcome(decode_strict, raw)


@pytest.mark.parametrize("raw", [b"\xff{}", b"\xef\xbb\xbf{}", b"[1]", b'"x"', b"{", b"", b"{}",
                                 ("{" + ENV + "}").encode(), ("{" + ENV + ',"A":"\xe2\x82"}').encode("latin-1")])
def test_fast_parse_refuses_with_the_strict_parsers_reason(raw):
    from core.envelope import decode_strict

    assert _outcome(lambda r: decode_event(r, 1 << 20), raw) == _outcome(decode_strict, raw)


def test_duplicate_key_refused_though_orjson_keeps_the_last():
    with pytest.raises(InvalidField, match="appears twice"):
        decode_event(("{" + ENV + ',"Nested":{"k":1,"k":2}}').encode(), 1 << 20)
