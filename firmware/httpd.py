# Hardened HTTP/1.1 server core for the captive portal (contract §2): small, bounded and safe against hostile
# clients. One request per connection (Connection: close), every limit below enforced while reading, so a
# client can never make the server buffer more than a few KB or hold a connection for long.
# The parsers are plain functions that raise only HttpError; serve() runs on asyncio streams.
import asyncio
import json
import time

import inet
import log

MAX_REQUEST_LINE = 512      # bytes, without CRLF; longer -> 400
MAX_HEADER_LINE = 512       # one header line; longer -> 431
MAX_HEADERS = 32            # header lines; more -> 431
MAX_HEADER_BYTES = 4096     # all header lines with their CRLFs; more -> 431
MAX_BODY = 2048             # Content-Length beyond -> 413, the body is never read
MAX_FORM_FIELDS = 16        # form or query fields; more -> 400
MAX_JSON_DEPTH = 4          # nesting of a JSON body; deeper -> 400 (bounds the parser's allocations)
REQUEST_TIMEOUT_MS = 5000   # the whole request must arrive within this (slowloris) -> 408
WRITE_TIMEOUT_MS = 5000     # the whole response must be taken by the client within this, else closed
MAX_CONNECTIONS = 4         # concurrent connections (device-wide; serve() may say fewer or more): beyond,
#                             the oldest one still sending its request after STUCK_MS is dropped, else 503
STUCK_MS = 1000             # a request not whole after this long is a stuck or slow client's: it may lose
#                             its place to a new connection (a phone's own requests arrive in milliseconds)
BACKLOG = 8                 # listen queue
READ_CHUNK = 512            # bytes asked of the socket per read
WRITE_CHUNK = 1024          # bytes of body per write + drain
SMALL_ANSWER = 640          # head and body up to this go out as one buffer, one write (see Response.message)

_METHODS = (b"GET", b"POST", b"HEAD")
# The request headers a Request keeps: what this server and the portal read. A phone sends a dozen more
# (User-Agent, Accept-*, ...) that an open connection would otherwise hold.
KEPT_HEADERS = ("host", "content-type", "content-length", "transfer-encoding")
# Constants below are tuples and bytes literals, not dicts or strings built at import: frozen into the
# firmware image they stay in flash and cost the heap nothing.
REASONS = ((200, "OK"), (201, "Created"), (202, "Accepted"), (204, "No Content"), (301, "Moved Permanently"),
           (302, "Found"), (303, "See Other"), (304, "Not Modified"), (400, "Bad Request"),
           (403, "Forbidden"), (404, "Not Found"), (405, "Method Not Allowed"), (408, "Request Timeout"),
           (409, "Conflict"),
           (411, "Length Required"), (413, "Content Too Large"), (415, "Unsupported Media Type"),
           (431, "Request Header Fields Too Large"), (500, "Internal Server Error"),
           (501, "Not Implemented"), (503, "Service Unavailable"), (505, "HTTP Version Not Supported"))

# Sent with every response. The portal page uses inline <style> and <script>, hence 'unsafe-inline';
# nothing may be loaded from, posted to or framed by another origin.
CSP = (b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       b"img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       b"base-uri 'none'")
_FIXED_HEADERS = (b"Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                  b"Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: ")
_END_OF_HEAD = b"\r\n\r\n"
_TOKEN_PUNCT = b"!#$%&'*+-.^_`|~"
_DIGITS = (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")


def reason(status, default):
    """The reason phrase of an HTTP status."""
    for code, text in REASONS:
        if code == status:
            return text
    return default


class HttpError(Exception):
    """A request the server refuses: status and a short message safe to show the client."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = message


# --- parsing (pure functions; anything malformed raises HttpError and nothing else) ----------------------

def _strip_eol(line):
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


# Lead bytes of multi-byte UTF-8 (RFC 3629 table 3-7): (first, last, continuation bytes, range of the
# second byte); later continuation bytes are always 0x80-0xBF.
_UTF8_LEADS = ((0xC2, 0xDF, 1, 0x80, 0xBF), (0xE0, 0xE0, 2, 0xA0, 0xBF), (0xE1, 0xEC, 2, 0x80, 0xBF),
               (0xED, 0xED, 2, 0x80, 0x9F), (0xEE, 0xEF, 2, 0x80, 0xBF), (0xF0, 0xF0, 3, 0x90, 0xBF),
               (0xF1, 0xF3, 3, 0x80, 0xBF), (0xF4, 0xF4, 3, 0x80, 0x8F))


def _utf8_lead(c):
    """(continuation bytes, second byte's range) of the lead byte c, or None when c cannot lead."""
    for first, last, k, lo, hi in _UTF8_LEADS:
        if first <= c <= last:
            return k, lo, hi
    return None


def _check_utf8(b):
    """Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): MicroPython's own
    decoder lets those through, so both runtimes check here and agree."""
    i, n = 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lead = _utf8_lead(c)
        if lead is None:
            return False
        k, lo, hi = lead
        if i + k >= n or not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += k + 1
    return True


def _text(b, what):
    if max(b, default=0) >= 0x80 and not _check_utf8(b):
        raise HttpError(400, "malformed UTF-8 in " + what)
    return b.decode()


def _hexval(c):
    if 48 <= c <= 57:
        return c - 48
    c |= 32
    if 97 <= c <= 102:
        return c - 87
    return -1


def _unquote(raw, what, plus_is_space):
    """Percent-decode raw bytes strictly into str: every % takes two hex digits, the result is UTF-8."""
    if plus_is_space and b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return _text(raw, what)
    parts = raw.split(b"%")
    out = bytearray(parts[0])
    for p in parts[1:]:
        h = _hexval(p[0]) if len(p) >= 2 else -1
        lo = _hexval(p[1]) if h >= 0 else -1
        if lo < 0:
            raise HttpError(400, "malformed %-escape in " + what)
        out.append(h * 16 + lo)
        out += p[2:]
    return _text(bytes(out), what)


def parse_request_line(line):
    """b"GET /path?query HTTP/1.1" -> ("GET", "/path", {query fields})."""
    line = _strip_eol(line)
    if len(line) > MAX_REQUEST_LINE:
        raise HttpError(400, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not version.startswith(b"HTTP/") or len(version) != 8 or version[6] != 46:     # 46: "."
        raise HttpError(400, "malformed HTTP version")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    if method not in _METHODS:
        raise HttpError(501, "method not implemented")
    if not target.startswith(b"/"):
        raise HttpError(400, "the request target must be a path")
    for c in target:
        if c <= 32 or c >= 127:
            raise HttpError(400, "raw control or non-ASCII byte in the request target")
    raw_path, _, raw_query = target.partition(b"?")
    path = _unquote(raw_path, "path", False)
    for ch in path:
        if ch < " " or ch == "\x7f":
            raise HttpError(400, "control character in path")
    return method.decode(), path, parse_form(raw_query, "query")


def _is_token(b):
    for c in b:
        if not (48 <= c <= 57 or 65 <= (c & 0xDF) <= 90 or c in _TOKEN_PUNCT):
            return False
    return len(b) > 0


def parse_header_line(line):
    """b"Name: value" -> ("name", "value"); names are tokens, values have no control characters."""
    line = _strip_eol(line)
    if len(line) > MAX_HEADER_LINE:
        raise HttpError(431, "header line too long")
    name, sep, value = line.partition(b":")
    if not sep or not _is_token(name):
        raise HttpError(400, "malformed header line")
    value = value.strip(b" \t")
    for c in value:
        if (c < 32 and c != 9) or c == 127:
            raise HttpError(400, "control character in header")
    return name.decode().lower(), _text(value, "header")


def parse_form(body, what="form"):
    """application/x-www-form-urlencoded bytes -> {name: value}; '+' is a space, %XX strict, UTF-8
    strict, a repeated or empty name or more than MAX_FORM_FIELDS fields -> 400."""
    fields = {}
    n = len(body)
    start = 0
    while start < n:       # walks the fields in place: no list of pieces for a body full of '&'
        end = body.find(b"&", start)
        if end < 0:
            end = n
        if end > start:
            if len(fields) >= MAX_FORM_FIELDS:
                raise HttpError(400, "too many fields in " + what)
            raw_name, _, raw_value = body[start:end].partition(b"=")
            name = _unquote(raw_name, what, True)
            if not name:
                raise HttpError(400, "empty field name in " + what)
            if name in fields:
                raise HttpError(400, "repeated field in %s: %s" % (what, name))
            fields[name] = _unquote(raw_value, what, True)
        start = end + 1
    return fields


def _json_shape_problem(body):
    """None, or what is wrong: nesting deeper than MAX_JSON_DEPTH, or a \\uD800-\\uDFFF escape
    (MicroPython's json does not pair surrogates, so both runtimes refuse them; browsers send UTF-8)."""
    depth = 0
    in_string = False
    escape = 0      # 1 after a backslash, 2 after \\u, 3 after \\ud
    for c in body:
        if escape == 1:
            escape = 2 if c == 117 else 0                   # u
        elif escape == 2:
            escape = 3 if c | 32 == 100 else 0              # d or D
        elif escape == 3:
            if 56 <= c <= 57 or 97 <= c | 32 <= 102:        # 8-9, a-f: a surrogate
                return "surrogate escape in JSON body"
            escape = 0
        elif in_string:
            if c == 92:                                     # backslash
                escape = 1
            elif c == 34:                                   # "
                in_string = False
        elif c == 34:
            in_string = True
        elif c == 123 or c == 91:                           # { [
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return "JSON body nested too deeply"
        elif c == 125 or c == 93:                           # } ]
            depth -= 1
    return None


def parse_json_object(body):
    """A JSON body -> dict; anything but a well-formed, shallow JSON object -> 400."""
    text = _text(body, "JSON body")
    problem = _json_shape_problem(body)
    if problem:
        raise HttpError(400, problem)
    try:
        obj = json.loads(text)
    except Exception:      # ValueError, or RecursionError/MemoryError: all the client's fault
        raise HttpError(400, "malformed JSON body") from None
    if not isinstance(obj, dict):
        raise HttpError(400, "JSON body must be an object")
    return obj


def html_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _content_length(value):
    for ch in value:
        if not "0" <= ch <= "9":
            raise HttpError(400, "malformed Content-Length")
    if not value:
        raise HttpError(400, "malformed Content-Length")
    if len(value) > 9 or int(value) > MAX_BODY:
        raise HttpError(413, "body larger than %d bytes" % MAX_BODY)
    return int(value)


# --- requests and responses --------------------------------------------------------------------------

class Request:
    def __init__(self, method, path, query, headers, body, remote):
        self.method = method     # "GET", "POST" or "HEAD"
        self.path = path         # percent-decoded, starts with "/"
        self.query = query       # {name: value}
        self.headers = headers   # {lower-case name: value} of KEPT_HEADERS; repeated ones joined with ", "
        self.body = body         # bytes, at most MAX_BODY
        self.remote = remote     # "ip:port" of the client, for logs


def _bytes(text):
    return text.encode() if isinstance(text, str) else text


def _safe(value):
    """A header's name or value as bytes, refused (ValueError) if it would split the response."""
    value = str(value)
    if "\r" in value or "\n" in value:
        raise ValueError("line break inside a response header")
    return value.encode()


class _Buffer:
    """Pieces written one after the other into one buffer of exact size: a first pass without the
    buffer (buf None) only counts them."""

    def __init__(self):
        self.buf = None
        self.n = 0

    def put(self, piece):
        end = self.n + len(piece)
        if self.buf is not None:
            self.buf[self.n:end] = piece
        self.n = end

    def number(self, n):
        """A non-negative int in decimal, digit by digit: no object made for it."""
        d = 1
        while d * 10 <= n:
            d *= 10
        while d:
            self.put(_DIGITS[n // d % 10])
            d //= 10


class Response:
    def __init__(self, status, body=b"", content_type="text/html; charset=utf-8", headers=None):
        self.status = status
        # body: str or bytes (or a memoryview), or a list of them sent one after the other. A page in
        # parts needs no free block as big as the page, which a fragmented heap may not have.
        self.body = [_bytes(p) for p in body] if isinstance(body, list) else _bytes(body)
        self.content_type = content_type
        self.headers = list(headers.items()) if isinstance(headers, dict) else list(headers or ())

    def length(self):
        return sum(len(p) for p in self.body) if isinstance(self.body, list) else len(self.body)

    def _put_head(self, out):
        out.put(b"HTTP/1.1 ")
        out.number(self.status)
        out.put(b" ")
        out.put(_bytes(reason(self.status, "Unknown")))
        out.put(b"\r\nContent-Type: ")
        out.put(_safe(self.content_type))
        out.put(b"\r\nContent-Length: ")
        out.number(self.length())
        out.put(b"\r\n")
        for name, value in self.headers:
            out.put(_safe(name))
            out.put(b": ")
            out.put(_safe(value))
            out.put(b"\r\n")
        out.put(_FIXED_HEADERS)
        out.put(CSP)
        out.put(_END_OF_HEAD)

    def message(self, with_body=True):
        """(first, rest) for _write, the head written piece by piece into one buffer of exact size (no
        intermediate strings). A whole answer of at most SMALL_ANSWER bytes is that one buffer, head and
        body (one write: one TCP segment, for a small copy); a bigger one is the head, then the body (or
        its parts) to send from where it is, never copied. ValueError for a header that would split the
        response."""
        body = self.body if with_body else b""
        out = _Buffer()
        self._put_head(out)         # counts
        whole = not isinstance(body, list) and out.n + len(body) <= SMALL_ANSWER
        out.buf = bytearray(out.n + len(body) if whole else out.n)
        out.n = 0
        self._put_head(out)
        if whole:
            out.put(body)
            return out.buf, b""
        return out.buf, body

    def head(self):
        """Status line and headers (bytes-like)."""
        return self.message(False)[0]


def json_response(obj, status=200):
    return Response(status, json.dumps(obj), "application/json")


def text_response(text, status=200):
    return Response(status, text, "text/plain; charset=utf-8")


def error_response(status, message):
    return text_response("%d %s: %s\n" % (status, reason(status, "Error"), message), status)


def redirect(location, status=302):
    return Response(status, b"", "text/plain; charset=utf-8", {"Location": location})


# --- the server --------------------------------------------------------------------------------------

_active = [0]   # open connections, device-wide (the limit protects the heap and sockets, not one listener)
_reading = []   # (task, ticks_ms it started) of connections still reading their request, oldest first


def active_connections():
    return _active[0]


class _Input:
    """Bounded line and body reads over an asyncio stream: buffers at most one line plus one chunk."""

    def __init__(self, reader):
        self.reader = reader
        self.buf = b""
        self.pos = 0

    async def _more(self):
        # What was read is let go before waiting: a connection that waits holds only its unfinished line.
        if self.pos:
            self.buf = self.buf[self.pos:]
            self.pos = 0
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            raise EOFError
        self.buf = self.buf + chunk if self.buf else chunk

    async def line(self, limit, status, message):
        """The next line without its line end, or HttpError(status) once it exceeds limit bytes."""
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                start = self.pos
                self.pos = i + 1
                if i > start and self.buf[i - 1] == 13:        # CR
                    i -= 1
                if i - start > limit:
                    raise HttpError(status, message)
                return self.buf[start:i]
            if len(self.buf) - self.pos > limit + 1:     # + 1: a CR may still wait for its LF
                raise HttpError(status, message)
            await self._more()

    async def body(self, n):
        while len(self.buf) - self.pos < n:
            await self._more()
        return self.buf[self.pos:self.pos + n]


async def _read_request(reader, remote):
    inp = _Input(reader)
    line = await inp.line(MAX_REQUEST_LINE, 400, "request line too long")
    method, path, query = parse_request_line(line)
    headers = {}
    budget = MAX_HEADER_BYTES
    count = 0
    while True:
        line = await inp.line(min(MAX_HEADER_LINE, max(0, budget - 2)), 431, "request headers too large")
        if not line:
            break
        budget -= len(line) + 2
        count += 1
        if count > MAX_HEADERS:
            raise HttpError(431, "too many request headers")
        name, value = parse_header_line(line)      # every line is checked; few are kept
        if name in KEPT_HEADERS:
            headers[name] = headers[name] + ", " + value if name in headers else value
    if "transfer-encoding" in headers:    # no chunked bodies: too much code for a portal that needs none
        raise HttpError(501, "Transfer-Encoding is not supported; send Content-Length")
    length = headers.get("content-length")
    body = b""
    if length is None:
        if method == "POST":
            raise HttpError(411, "POST needs a Content-Length")
    else:
        n = _content_length(length)
        if n:
            body = await inp.body(n)
    return Request(method, path, query, headers, body, remote)


def _peer(writer):
    try:
        return "%s:%d" % inet.ip_port(writer.get_extra_info("peername"))
    except Exception:       # not IPv4, or no address at all: only a log line is missing it
        return "?"


async def _call(handler, req):
    """The handler's answer as _write's (first, rest); a handler that fails is a 500."""
    try:
        resp = handler(req)
        if not isinstance(resp, Response) and hasattr(resp, "send"):    # a coroutine
            resp = await resp
        if not isinstance(resp, Response):
            raise TypeError("handler returned no Response")
        # A header that would split the response is the handler's fault too.
        return resp.message(req.method != "HEAD")
    except Exception as e:  # logged without its text: it may quote what the client sent
        log.error("httpd", "%s %s from %s: handler failed with %s"
                  % (req.method, req.path, req.remote, type(e).__name__))
        return error_response(500, "internal error").message()


async def _write(writer, first, rest):
    # No await between the first buffer and the body's first chunk: nothing else runs in between.
    writer.write(first)
    for part in rest if isinstance(rest, list) else (rest,):
        for i in range(0, len(part), WRITE_CHUNK):
            # A part that fits one write goes as it is, a longer one as views of it: never a copy.
            writer.write(part if len(part) <= WRITE_CHUNK else memoryview(part)[i:i + WRITE_CHUNK])
            await writer.drain()
    await writer.drain()


async def _send(writer, first, rest):
    try:
        await asyncio.wait_for(_write(writer, first, rest), WRITE_TIMEOUT_MS / 1000)
        return True
    except Exception:       # the client stopped reading or went away
        return False


def _drop_oldest_unfinished():
    """Make room for a new connection: cancel the oldest one that has not sent its whole request within
    STUCK_MS (its own clean-up closes it). False when there is none: every open connection is being
    answered or has only just started (a burst of requests: the new one gets a 503 to retry)."""
    if not _reading or time.ticks_diff(time.ticks_ms(), _reading[0][1]) < STUCK_MS:
        return False
    _reading.pop(0)[0].cancel()
    return True


async def handle_connection(reader, writer, handler, max_connections=MAX_CONNECTIONS):
    """Serve one request on one connection, then close it. Never raises (but a cancellation: a newer
    connection took this one's place before its request was whole)."""
    _active[0] += 1
    clean = False
    me = asyncio.current_task()
    try:
        remote = _peer(writer)
        req = None
        if _active[0] > max_connections and not _drop_oldest_unfinished():
            log.debug("httpd", "503 to %s: %d connections open" % (remote, _active[0] - 1))
            resp = error_response(503, "busy, try again")
            resp.headers.append(("Retry-After", "2"))
        else:
            reading = (me, time.ticks_ms())
            _reading.append(reading)
            try:
                req = await asyncio.wait_for(_read_request(reader, remote), REQUEST_TIMEOUT_MS / 1000)
            except HttpError as e:
                log.debug("httpd", "%d to %s: %s" % (e.status, remote, e.message))
                resp = error_response(e.status, e.message)
            except asyncio.TimeoutError:    # before OSError: CPython's TimeoutError is one
                log.debug("httpd", "408 to %s" % remote)
                resp = error_response(408, "the request did not arrive in time")
            except (EOFError, OSError):     # the client left: nobody to answer
                return
            finally:
                if reading in _reading:
                    _reading.remove(reading)
        if req is None:
            first, rest = resp.message()
        else:
            first, rest = await _call(handler, req)
        clean = await _send(writer, first, rest)
    except Exception as e:      # last line of defence: nothing a client does may reach the event loop
        log.error("httpd", "connection failed with %s" % type(e).__name__)
    finally:
        _active[0] -= 1
        # Not clean: CPython would otherwise keep flushing to a stalled client.
        inet.close_stream(writer, abort=not clean)


async def serve(host, port, handler, max_connections=MAX_CONNECTIONS):
    """Start serving; handler(request) -> Response (plain function or coroutine). Returns the server.
    max_connections: what the device's socket budget allows (the hardware layer's portal_connections)."""
    def on_connect(reader, writer):     # the connection's coroutine itself: no frame around it
        return handle_connection(reader, writer, handler, max_connections)

    return await asyncio.start_server(on_connect, host, port, backlog=BACKLOG)
