"""Property tests of the HTTP core's parsers (CPython, hypothesis): arbitrary bytes raise nothing but
HttpError, and what a browser or urllib encodes comes back exactly."""
import json
from urllib.parse import parse_qsl, quote, urlencode

import httpd
from httpd import HttpError
from hypothesis import given, settings
from hypothesis import strategies as st

PARSERS = (httpd.parse_request_line, httpd.parse_header_line, httpd.parse_form, httpd.parse_json_object)
STATUSES = (400, 413, 431, 501, 505)
# Text a client can send: anything but surrogates (not encodable) and, in paths, control characters.
TEXT = st.characters(blacklist_categories=("Cs",))
PATH_TEXT = st.characters(blacklist_categories=("Cs", "Cc"))
PIECES = st.sampled_from([b"/", b"a", b"%", b"%4", b"%41", b"%C3", b"%A9", b"%C0%80", b"%ED%A0%80", b"%F0%9F",
                          b"%98%80", b"%zz", b"?", b"&", b"=", b"+", b" ", b"\t", b"\r", b"\xff", b"\xc3\xa9",
                          b"{", b"[", b'"', b"\\ud800", b":", b"HTTP/1.1", b"GET", b"\x00"])
STRUCTURED = st.lists(PIECES, max_size=40).map(b"".join)
LINES = st.tuples(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"", b"G\xffT"]), STRUCTURED,
                  st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.x", b"", b"http/1.1"])
                  ).map(lambda t: b" ".join(t))


def only_http_errors(data):
    for parse in PARSERS:
        try:
            parse(data)
        except HttpError as e:
            assert e.status in STATUSES and isinstance(e.message, str) and e.message


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=800))
def test_arbitrary_bytes_raise_only_http_errors(data):
    only_http_errors(data)


@settings(max_examples=400, deadline=None)
@given(st.one_of(STRUCTURED, LINES))
def test_structured_garbage_raises_only_http_errors(data):
    only_http_errors(data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(TEXT, min_size=1, max_size=20), st.text(TEXT, max_size=40),
                       max_size=httpd.MAX_FORM_FIELDS), st.booleans())
def test_form_round_trip(fields, plus_for_space):
    body = urlencode(fields) if plus_for_space else urlencode(fields, quote_via=quote)
    assert httpd.parse_form(body.encode()) == fields


@settings(max_examples=300, deadline=None)
@given(st.one_of(STRUCTURED, st.binary(max_size=200)))
def test_form_agrees_with_urllib_when_accepted(data):
    try:
        fields = httpd.parse_form(data)
    except HttpError:
        return
    assert fields == dict(parse_qsl(data.decode(), keep_blank_values=True, errors="strict"))


@settings(max_examples=300, deadline=None)
@given(st.text(PATH_TEXT, max_size=60), st.dictionaries(st.text(TEXT, min_size=1, max_size=10),
                                                         st.text(TEXT, max_size=10), max_size=4))
def test_request_line_round_trip(path, query):
    target = "/" + quote(path, safe="/")
    if query:
        target += "?" + urlencode(query)
    line = ("GET %s HTTP/1.1" % target).encode()
    if len(line) > httpd.MAX_REQUEST_LINE:
        assert _status(httpd.parse_request_line, line) == 400
    else:
        assert httpd.parse_request_line(line) == ("GET", "/" + path, query)


@settings(max_examples=200, deadline=None)
@given(st.text("abcXYZ019-_.!#$%&'*+^`|~", min_size=1, max_size=30),
       st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=100))
def test_header_round_trip(name, value):
    line = ("%s: %s" % (name, value)).encode()
    if len(line) > httpd.MAX_HEADER_LINE:
        assert _status(httpd.parse_header_line, line) == 431
    else:
        assert httpd.parse_header_line(line) == (name.lower(), value.strip(" \t"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(TEXT, max_size=10),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(TEXT, max_size=20),
                                 st.lists(st.integers(), max_size=3)), max_size=8))
def test_json_round_trip(obj):
    assert httpd.parse_json_object(json.dumps(obj, ensure_ascii=False).encode()) == obj


def _status(fn, data):
    try:
        fn(data)
    except HttpError as e:
        return e.status
    return None
