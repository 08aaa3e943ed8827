# The HTTP core (firmware/httpd.py): its parsers' good and bad cases with their exact statuses, a seeded
# random corpus of mutated input that must never raise anything but HttpError, and the connection
# handling driven through fake streams (limits, timeouts, the connection cap), on both runtimes.
import asyncio
import json

import httpd
import log
from fwtest import raises
from httpd import HttpError


def status_of(fn, *args):
    return raises(HttpError, fn, *args).status


# --- request line --------------------------------------------------------------------------------------

def test_request_line_good():
    assert httpd.parse_request_line(b"GET / HTTP/1.1") == ("GET", "/", {})
    assert httpd.parse_request_line(b"HEAD /x HTTP/1.0\r\n") == ("HEAD", "/x", {})
    m, path, query = httpd.parse_request_line(b"POST /a%20b+c/%C3%A9?x=1+2&y=%26%3D&z HTTP/1.1")
    assert (m, path) == ("POST", "/a b+c/\u00e9")          # '+' is a plus in a path
    assert query == {"x": "1 2", "y": "&=", "z": ""}
    assert httpd.parse_request_line(b"GET /?a=1&&b=2& HTTP/1.1")[2] == {"a": "1", "b": "2"}
    long_ok = b"GET /" + b"a" * (httpd.MAX_REQUEST_LINE - 14) + b" HTTP/1.1"
    assert len(long_ok) == httpd.MAX_REQUEST_LINE
    assert httpd.parse_request_line(long_ok)[0] == "GET"


def test_request_line_bad():
    cases = [
        (b"", 400), (b"GET", 400), (b"GET /", 400), (b"GET  / HTTP/1.1", 400), (b"GET / HTTP/1.1 ", 400),
        (b"GET / FTP/1.1", 400), (b"GET / HTTP/11", 400), (b"GET / HTTP/1.1x", 400),
        (b"GET / HTTP/2.0", 505), (b"GET / HTTP/0.9", 505),
        (b"PUT / HTTP/1.1", 501), (b"get / HTTP/1.1", 501), (b"\xff / HTTP/1.1", 501),
        (b"GET x HTTP/1.1", 400), (b"GET http://a/ HTTP/1.1", 400), (b"GET * HTTP/1.1", 400),
        (b"GET /%zz HTTP/1.1", 400), (b"GET /% HTTP/1.1", 400), (b"GET /%4 HTTP/1.1", 400),
        (b"GET /%+1 HTTP/1.1", 400), (b"GET /%C3 HTTP/1.1", 400), (b"GET /%C3%28 HTTP/1.1", 400),
        (b"GET /%C0%80 HTTP/1.1", 400), (b"GET /%ED%A0%80 HTTP/1.1", 400),
        (b"GET /%F4%90%80%80 HTTP/1.1", 400),
        (b"GET /%FF HTTP/1.1", 400), (b"GET /%00 HTTP/1.1", 400), (b"GET /%0A HTTP/1.1", 400),
        (b"GET /\xc3\xa9 HTTP/1.1", 400), (b"GET /\x01 HTTP/1.1", 400), (b"GET /a\tb HTTP/1.1", 400),
        (b"GET /?a=1&a=2 HTTP/1.1", 400), (b"GET /?=1 HTTP/1.1", 400), (b"GET /?a=%G0 HTTP/1.1", 400),
        (b"GET /" + b"a" * httpd.MAX_REQUEST_LINE + b" HTTP/1.1", 400),
        (b"GET /?" + b"&".join(b"k%d=1" % i for i in range(httpd.MAX_FORM_FIELDS + 1)) + b" HTTP/1.1", 400),
    ]
    for line, status in cases:
        got = status_of(httpd.parse_request_line, line)
        assert got == status, (line, got, status)


# --- headers -------------------------------------------------------------------------------------------

def test_header_line():
    assert httpd.parse_header_line(b"Host: 192.168.251.1") == ("host", "192.168.251.1")
    assert httpd.parse_header_line(b"X-A:\t v  \t\r\n") == ("x-a", "v")
    assert httpd.parse_header_line(b"Empty:") == ("empty", "")
    assert httpd.parse_header_line(b"User-Agent: caf\xc3\xa9 a:b") == ("user-agent", "caf\u00e9 a:b")
    for line, status in [(b"no colon", 400), (b": v", 400), (b"Bad Name: v", 400), (b"Bad\tName: v", 400),
                         (b"N\xc3\xa9: v", 400), (b"A: x\x00y", 400), (b"A: x\ry", 400), (b"A: \x7f", 400),
                         (b"A: \xff", 400), (b"A: \xc0\x80", 400),
                         (b"A: " + b"v" * httpd.MAX_HEADER_LINE, 431)]:
        got = status_of(httpd.parse_header_line, line)
        assert got == status, (line, got, status)


# --- bodies --------------------------------------------------------------------------------------------

def test_form():
    assert httpd.parse_form(b"") == {}
    assert httpd.parse_form(b"ssid=My+Net%21&password=p%40ss+w%2Bord") == {"ssid": "My Net!",
                                                                          "password": "p@ss w+ord"}
    assert httpd.parse_form(b"a&b=&c==") == {"a": "", "b": "", "c": "="}
    assert httpd.parse_form(b"s=%F0%9F%98%80\xc3\xa9") == {"s": "\U0001f600\u00e9"}
    full = b"&".join(b"f%d=%d" % (i, i) for i in range(httpd.MAX_FORM_FIELDS))
    assert len(httpd.parse_form(full)) == httpd.MAX_FORM_FIELDS
    assert len(httpd.parse_form(b"&" * 500 + full + b"&" * 500)) == httpd.MAX_FORM_FIELDS
    for body in [full + b"&x=1", b"a=1&a=2", b"a=1&a", b"=v", b"a=%", b"a=%2", b"a=%zz", b"%=1",
                 b"a=\xff", b"a=%C0%AF", b"a=%ED%B0%80", b"a=\xe2\x82", b"a=%E2%82"]:
        e = raises(HttpError, httpd.parse_form, body)
        assert e.status == 400, body


def test_json_object():
    assert httpd.parse_json_object(b'{"ssid": "Home", "password": "secret123"}') == {
        "ssid": "Home", "password": "secret123"}
    assert httpd.parse_json_object('{"s": "\u00e9\U0001f600", "n": [1, {"a": []}]}'.encode()) == {
        "s": "\u00e9\U0001f600", "n": [1, {"a": []}]}
    assert httpd.parse_json_object(b'{"a": "\\u00e9\\\\ud800"}') == {"a": "\u00e9\\ud800"}
    for body in [b"", b"[]", b"1", b'"x"', b"null", b"{", b'{"a":1} 2', b"{'a':1}", b"\xff{}",
                 b'{"a":"\xc0\x80"}', b'{"a":"\\ud800"}', b'{"a":"\\uD83D\\uDE00"}',
                 b'{"a":' + b"[" * 5 + b"]" * 5 + b"}", b"[" * 2000]:
        e = raises(HttpError, httpd.parse_json_object, body)
        assert e.status == 400, body


def test_html_escape():
    assert (httpd.html_escape("<a href=\"x\">'&'</a>")
            == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;")
    assert httpd.html_escape("plain") == "plain"


# --- responses -----------------------------------------------------------------------------------------

def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return status, headers, body


def test_response_headers():
    for resp, status, ctype, body in [
            (httpd.Response(200, "<p>\u00e9</p>"), 200, "text/html; charset=utf-8", "<p>\u00e9</p>".encode()),
            (httpd.json_response({"a": [1]}, 202), 202, "application/json", b'{"a": [1]}'),
            (httpd.text_response("hi", 404), 404, "text/plain; charset=utf-8", b"hi"),
            (httpd.redirect("http://192.168.251.1/"), 302, "text/plain; charset=utf-8", b"")]:
        status_got, headers, _ = split_response(resp.head())
        assert status_got == status
        assert headers["content-type"] == ctype
        assert headers["content-length"] == str(len(body)) and resp.body == body
        assert headers["connection"] == "close"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert split_response(httpd.redirect("/x").head())[1]["location"] == "/x"
    raises(ValueError, httpd.redirect("/x\r\nSet-Cookie: a=b").head)
    raises(ValueError, httpd.Response(200, "", headers={"X-A": "a\nb"}).head)


# --- the random corpus ---------------------------------------------------------------------------------

class Rng:
    """xorshift32: the same corpus on both runtimes for a seed."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n


SPICE = [b"%", b"%G", b"%C3", b"%C0%80", b"%ED%A0%80", b"%F4%90%80%80", b"%FF", b"%00", b"\xff", b"\xc3",
         b"\xe2\x82", b"\xed\xa0\x80", b"\r", b"\n", b"\x00", b" ", b"\t", b"&", b"=", b"+", b"?", b":",
         b"{", b"[", b"\\ud800", b'"', b"\\"]


def mutate(rng, seed):
    b = bytearray(seed)
    for _ in range(1 + rng.below(4)):
        op = rng.below(7)
        pos = rng.below(len(b) + 1)
        if op == 0 and b:                                   # flip a byte
            b[pos % len(b)] = rng.below(256)
        elif op == 1:                                       # truncate
            b = b[:pos]
        elif op == 2:                                       # a nasty fragment
            b = b[:pos] + SPICE[rng.below(len(SPICE))] + b[pos:]
        elif op == 3:                                       # a random byte
            b = b[:pos] + bytes([rng.below(256)]) + b[pos:]
        elif op == 4:                                       # overlong: repeat a slice
            b = b[:pos] + bytes(b[pos:pos + 8]) * (1 + rng.below(120)) + b[pos:]
        elif op == 5 and b:                                 # delete
            del_to = pos + 1 + rng.below(4)
            b = b[:pos] + b[del_to:]
        else:                                               # a random %-escape
            b = b[:pos] + b"%%%02X" % rng.below(256) + b[pos:]
    return bytes(b)


SEEDS = {
    httpd.parse_request_line: [b"GET / HTTP/1.1", b"POST /connect?x=1&y=%C3%A9 HTTP/1.0",
                               b"HEAD /api/status?a=b+c HTTP/1.1"],
    httpd.parse_header_line: [b"Host: 192.168.251.1", b"Content-Length: 42", b"User-Agent: Mozilla/5.0 (X)"],
    httpd.parse_form: [b"ssid=Home&password=secret123", b"ssid=%C3%A9t%C3%A9+Wi-Fi&password=",
                       b"a=1&b=2&c=3&hidden_ssid=x"],
    httpd.parse_json_object: [b'{"ssid": "Home", "password": "secret123"}', b'{"a": [1, {"b": null}]}',
                              '{"s": "\u00e9t\u00e9"}'.encode()],
}
CORPUS_PER_PARSER = 1500


def test_random_corpus_raises_only_http_errors():
    rng = Rng(20251123)
    outcomes = {}
    for parse, seeds in SEEDS.items():
        ok = refused = 0
        for i in range(CORPUS_PER_PARSER):
            data = mutate(rng, seeds[i % len(seeds)])
            try:
                parse(data)
                ok += 1
            except HttpError as e:
                assert e.status in (400, 431, 501, 505), (data, e.status)
                assert isinstance(e.message, str) and e.message
                refused += 1
            except Exception as e:
                raise AssertionError("%s(%r) raised %r" % (parse.__name__, data, e)) from None
        outcomes[parse.__name__] = (ok, refused)
    for name, (ok, refused) in outcomes.items():   # the corpus exercises both outcomes of each parser
        assert ok > 10 and refused > 100, (name, ok, refused)


# --- connections, through fake streams ------------------------------------------------------------------

class FakeReader:
    """Plays chunks to the server; then EOF, or (hang=True) nothing ever again. Counts what was read."""

    def __init__(self, chunks, hang=False, error=None):
        self.chunks = list(chunks)
        self.hang = hang
        self.error = error
        self.taken = 0
        self.reads = 0

    async def read(self, n):
        self.reads += 1
        if not self.chunks:
            if self.error:
                raise self.error
            if self.hang:
                await asyncio.sleep(3600)
            return b""
        chunk = self.chunks.pop(0)
        if isinstance(chunk, (int, float)):     # a pause, in seconds
            await asyncio.sleep(chunk)
            return await self.read(n)
        if len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        self.taken += len(chunk)
        return chunk


class FakeWriter:
    def __init__(self, stall=False):
        self.out = b""
        self.stall = stall
        self.closed = False

    def get_extra_info(self, name):
        return ("10.0.0.7", 50123)

    def write(self, data):
        self.out += bytes(data)

    async def drain(self):
        if self.stall:
            await asyncio.sleep(3600)

    def close(self):
        self.closed = True

    async def wait_closed(self):
        pass


def echo_handler(req):
    return httpd.json_response({"method": req.method, "path": req.path, "query": req.query,
                                "host": req.headers.get("host"), "body": req.body.decode(),
                                "remote": req.remote})


def run(chunks, handler=echo_handler, **kw):
    reader = FakeReader(chunks, hang=kw.pop("hang", False), error=kw.pop("error", None))
    writer = FakeWriter(**kw)
    asyncio.run(httpd.handle_connection(reader, writer, handler))
    assert writer.closed and httpd.active_connections() == 0
    return reader, writer


def answer(chunks, handler=echo_handler, **kw):
    reader, writer = run(chunks, handler, **kw)
    status, headers, body = split_response(writer.out)
    assert headers["content-length"] == str(len(body)) or headers["content-length"] and not body
    return status, headers, body, reader


def test_connection_get_post_head():
    status, _, body, _ = answer([b"GET /e?a=%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n"])
    assert status == 200
    assert json.loads(body) == {"method": "GET", "path": "/e", "query": {"a": "\u00e9"}, "host": "h",
                                "body": "", "remote": "10.0.0.7:50123"}
    # One byte at a time, bare LF line ends.
    req = b"POST /f HTTP/1.0\nContent-Length: 7\n\nssid=ab"
    status, _, body, _ = answer([req[i:i + 1] for i in range(len(req))])
    assert status == 200 and json.loads(body)["body"] == "ssid=ab"
    status, headers, body, _ = answer([b"HEAD /e HTTP/1.1\r\n\r\n"])
    assert status == 200 and body == b"" and int(headers["content-length"]) > 20


def test_a_body_in_parts_goes_out_whole_with_its_length():
    # A page in parts (the portal's GET /) needs no free block as big as the page.
    parts = ["<p>\u00e9", b"x" * (httpd.WRITE_CHUNK + 5), "", "</p>"]
    whole = "<p>\u00e9".encode() + b"x" * (httpd.WRITE_CHUNK + 5) + b"</p>"
    status, headers, body, _ = answer([b"GET / HTTP/1.1\r\n\r\n"], lambda req: httpd.Response(200, parts))
    assert status == 200 and body == whole and headers["content-length"] == str(len(whole))
    status, headers, body, _ = answer([b"HEAD / HTTP/1.1\r\n\r\n"], lambda req: httpd.Response(200, parts))
    assert status == 200 and body == b"" and headers["content-length"] == str(len(whole))
    status, headers, body, _ = answer([b"GET / HTTP/1.1\r\n\r\n"], lambda req: httpd.Response(204, []))
    assert status == 204 and body == b"" and headers["content-length"] == "0"


def test_connection_refusals():
    cases = [
        (b"GET /" + b"a" * 600 + b" HTTP/1.1\r\n\r\n", 400),
        (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"v" * 600 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (httpd.MAX_HEADERS + 1) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + (b"X: " + b"v" * 400 + b"\r\n") * 11 + b"\r\n", 431),
        (b"POST / HTTP/1.1\r\n\r\n", 411),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413),
        (b"BREW / HTTP/1.1\r\n\r\n", 501),
    ]
    for req, expect in cases:
        status, headers, body, _ = answer([req])
        assert status == expect, (req[:60], status)
        assert headers["connection"] == "close" and body.startswith(b"%d " % expect)
    # The total header budget: 8 lines of 500 bytes fit in 4096, a ninth does not.
    line = b"X: " + b"v" * 495 + b"\r\n"
    assert answer([b"GET / HTTP/1.1\r\n" + line * 8 + b"\r\n"])[0] == 200
    assert answer([b"GET / HTTP/1.1\r\n" + line * 9 + b"\r\n"])[0] == 431


def test_oversized_input_is_not_read():
    # A body over the limit is refused from its Content-Length alone.
    head = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (httpd.MAX_BODY + 1)
    status, _, _, reader = answer([head, b"x" * (httpd.MAX_BODY + 1)])
    assert status == 413 and reader.taken == len(head)
    # A line that never ends is refused after at most the limit plus one chunk.
    for first, limit, expect in [(b"GET /", httpd.MAX_REQUEST_LINE, 400),
                                 (b"GET / HTTP/1.1\r\nX: ", httpd.MAX_HEADER_LINE, 431)]:
        status, _, _, reader = answer([first] + [b"a" * 100] * 1000)
        assert status == expect and reader.taken <= len(first) + limit + httpd.READ_CHUNK, reader.taken


def test_handler_failures_are_500_without_details():
    def boom(req):
        raise ValueError("secret detail")

    async def coro_boom(req):
        await asyncio.sleep(0)
        raise KeyError("secret detail")

    saved, log.level = log.level, 9     # the failures are logged; keep the test output clean
    try:
        for handler in (boom, coro_boom, lambda req: None, lambda req: httpd.redirect("/\r\nX: y")):
            status, _, body, _ = answer([b"GET / HTTP/1.1\r\n\r\n"], handler)
            assert status == 500 and b"secret" not in body
    finally:
        log.level = saved


def test_coroutine_handler():
    async def slow(req):
        await asyncio.sleep(0.01)
        return httpd.text_response("late " + req.path)

    assert answer([b"GET /z HTTP/1.1\r\n\r\n"], slow)[2] == b"late /z"


def test_clients_that_leave_get_nothing():
    for kw in ({}, {"error": OSError(104)}):
        for chunks in ([], [b"GET / HTTP/1.1\r\nHost: x\r\n"],
                       [b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"]):
            _, writer = run(chunks, **kw)
            assert writer.out == b""


def with_timeouts(fn, request_ms=150, write_ms=150):
    saved = httpd.REQUEST_TIMEOUT_MS, httpd.WRITE_TIMEOUT_MS
    httpd.REQUEST_TIMEOUT_MS, httpd.WRITE_TIMEOUT_MS = request_ms, write_ms
    try:
        return fn()
    finally:
        httpd.REQUEST_TIMEOUT_MS, httpd.WRITE_TIMEOUT_MS = saved


def test_slow_clients_time_out():
    def check():
        # Silent; a request trickling in (slowloris); a body that never completes.
        for chunks in ([], [b"GET / HTTP/1.1\r\n", 0.05, b"X: 1\r\n", 0.05, b"Y: 2\r\n", 0.1, b"\r\n"],
                       [b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"]):
            status, _, _, _ = answer(chunks, hang=True)
            assert status == 408
        # A client that never takes the response is dropped after the write timeout.
        _, writer = run([b"GET / HTTP/1.1\r\n\r\n"], stall=True)
        assert writer.out.startswith(b"HTTP/1.1 200")
    with_timeouts(check)


def _hanging_connections():
    """MAX_CONNECTIONS connections that never finish their request, started 10 ms apart: (tasks, pairs)."""
    async def start():
        pairs = [(FakeReader([b"GET / HT"], hang=True), FakeWriter()) for _ in range(httpd.MAX_CONNECTIONS)]
        tasks = []
        for r, w in pairs:
            tasks.append(asyncio.create_task(httpd.handle_connection(r, w, echo_handler)))
            await asyncio.sleep(0.01)                   # in this order: the first is the oldest
        return tasks, pairs
    return start()


def test_a_new_connection_takes_the_place_of_the_oldest_unfinished_request():
    # Every slot held by a client that never finishes its request (a stuck phone, a slowloris): a new
    # request is answered at once, in the oldest one's place, not refused until they time out.
    async def scenario():
        tasks, hanging = await _hanging_connections()
        assert httpd.active_connections() == httpd.MAX_CONNECTIONS
        await asyncio.sleep(0.06)                       # all of them stuck (past STUCK_MS) by now
        extra = FakeWriter()
        await httpd.handle_connection(FakeReader([b"GET / HTTP/1.1\r\n\r\n"]), extra, echo_handler)
        assert split_response(extra.out)[0] == 200
        await asyncio.sleep(0.01)
        oldest_writer = hanging[0][1]
        assert tasks[0].done() and oldest_writer.closed and oldest_writer.out == b""    # dropped, unanswered
        assert not any(t.done() for t in tasks[1:])    # the others still wait for their requests
        assert httpd.active_connections() == httpd.MAX_CONNECTIONS - 1
        for t in tasks[1:]:
            await t                                     # they time out (408) as before
        assert httpd.active_connections() == 0
        assert all(split_response(w.out)[0] == 408 and w.closed for _, w in hanging[1:])

    stuck = httpd.STUCK_MS
    httpd.STUCK_MS = 50
    try:
        with_timeouts(lambda: asyncio.run(scenario()), request_ms=400)
    finally:
        httpd.STUCK_MS = stuck


def test_a_burst_of_new_connections_gets_503_not_each_others_places():
    # Connections that have only just started (a phone opening several at once) are not stuck: the one
    # over the cap is told to retry, nobody is dropped.
    async def scenario():
        tasks, hanging = await _hanging_connections()
        extra = FakeWriter()
        await httpd.handle_connection(FakeReader([b"GET / HTTP/1.1\r\n\r\n"]), extra, echo_handler)
        assert split_response(extra.out)[0] == 503
        assert not any(t.done() for t in tasks)
        for t in tasks:
            await t
        assert all(split_response(w.out)[0] == 408 for _, w in hanging)

    with_timeouts(lambda: asyncio.run(scenario()), request_ms=300)


def test_connection_cap_answers_503_when_every_connection_is_being_answered():
    async def scenario():
        release = asyncio.Event()

        async def slow_handler(req):
            await release.wait()                       # every slot busy answering, none reading
            return echo_handler(req)

        busy = [(FakeReader([b"GET / HTTP/1.1\r\n\r\n"]), FakeWriter()) for _ in range(httpd.MAX_CONNECTIONS)]
        tasks = [asyncio.create_task(httpd.handle_connection(r, w, slow_handler)) for r, w in busy]
        await asyncio.sleep(0.02)
        assert httpd.active_connections() == httpd.MAX_CONNECTIONS
        extra_reader, extra_writer = FakeReader([b"GET / HTTP/1.1\r\n\r\n"]), FakeWriter()
        await httpd.handle_connection(extra_reader, extra_writer, echo_handler)
        assert extra_reader.reads == 0 and extra_writer.closed
        status, headers, _ = split_response(extra_writer.out)
        assert status == 503 and headers["retry-after"] == "2"
        release.set()
        for t in tasks:
            await t
        assert httpd.active_connections() == 0
        assert all(split_response(w.out)[0] == 200 for _, w in busy)

    with_timeouts(lambda: asyncio.run(scenario()))
