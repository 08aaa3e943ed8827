# Runs the HTTP core on the MicroPython unix port for tests/host/test_httpd_server.py: a test handler on
# 127.0.0.1:PORT, and a task ticking every 50 ms that records its worst lateness (nothing may block the
# event loop). Prints "listening PORT" once it serves.
# usage: micropython mp_httpd_main.py PORT
import asyncio
import gc
import sys
import time

import httpd

TICK_MS = 50
BIG_MAX = 1 << 20
stats = {"worst_late_ms": 0, "ticks": 0}


def handle(req):
    if req.path == "/echo":
        return httpd.json_response(req.query)
    if req.path == "/form" and req.method == "POST":
        as_json = req.headers.get("content-type", "").startswith("application/json")
        try:
            data = httpd.parse_json_object(req.body) if as_json else httpd.parse_form(req.body)
        except httpd.HttpError as e:
            return httpd.json_response({"error": e.message}, 400)
        return httpd.json_response(data)
    if req.path == "/boom":
        raise RuntimeError("secret detail")
    if req.path == "/slow":
        return slow()
    if req.path == "/big":
        n = min(int(req.query.get("n", "1000")), BIG_MAX)
        return httpd.Response(200, b"x" * n, "application/octet-stream")
    if req.path == "/lateness":
        gc.collect()
        return httpd.json_response({"worst_late_ms": stats["worst_late_ms"], "ticks": stats["ticks"],
                                    "active": httpd.active_connections(), "mem_free": gc.mem_free(),
                                    "mem_alloc": gc.mem_alloc()})
    return httpd.text_response("not found", 404)


async def slow():
    await asyncio.sleep_ms(200)
    return httpd.text_response("slow ok")


async def ticker():
    while True:
        t0 = time.ticks_ms()
        await asyncio.sleep_ms(TICK_MS)
        late = time.ticks_diff(time.ticks_ms(), t0) - TICK_MS
        stats["ticks"] += 1
        if late > stats["worst_late_ms"]:
            stats["worst_late_ms"] = late


async def main(port, max_connections):
    await httpd.serve("127.0.0.1", port, handle, max_connections)
    print("listening %d" % port)
    await ticker()


# argv: port [max_connections] (8 by default: room for the timeout tests' slow clients side by side)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8))
