# store.py: atomic JSON files with a last-good copy, bounded reads, crash at any step.
import json

import store
from fwfiles import CrashingFs, LogCapture, names, read_raw, rmtree, scratch, with_fs, write_raw
from fwtest import raises


def _positive_n(doc):
    if not isinstance(doc, dict) or not isinstance(doc.get("n"), int) or doc["n"] < 1:
        raise ValueError("n must be a positive integer")


def test_join_puts_exactly_one_slash():
    assert store.join("/", "settings.json") == "/settings.json"
    assert store.join("/flash", "settings.json") == "/flash/settings.json"
    assert store.join("/flash/", "settings.json") == "/flash/settings.json"
    assert store.join("", "settings.json") == "settings.json"


def test_write_then_read_round_trips_and_leaves_no_tmp():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1, "s": "x"})
    assert store.read_json(p) == ({"n": 1, "s": "x"}, "main")
    assert names(d) == ["doc.json"]          # first write: nothing to keep as last good
    store.write_json(p, {"n": 2})
    assert names(d) == ["doc.json", "doc.json.bak"]
    assert json.loads(read_raw(p + ".bak")) == {"n": 1, "s": "x"}
    assert store.read_json(p) == ({"n": 2}, "main")
    rmtree(d)


def test_missing_everything_is_reported_as_missing():
    d = scratch()
    assert store.read_json(d + "doc.json") == (None, "missing")
    rmtree(d)


def test_broken_main_falls_back_to_last_good_and_logs_why():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})
    store.write_json(p, {"n": 2})
    for broken in (b"", b"{\"n\": 2", b"\xff\xfe\x00garbage", b"[1, 2]", b"{\"n\": -5}", b"null"):
        write_raw(p, broken)
        with LogCapture() as logs:
            assert store.read_json(p, _positive_n) == ({"n": 1}, "bak")
        assert "doc.json: skipped" in logs.text()
        assert "using " + p + ".bak" in logs.text()
    rmtree(d)


def test_both_broken_reports_broken():
    d = scratch()
    p = d + "doc.json"
    write_raw(p, "{")
    write_raw(p + ".bak", "{\"n\": 0}")
    assert store.read_json(p, _positive_n) == (None, "broken")
    rmtree(d)


def test_oversized_file_is_refused_unread():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})
    store.write_json(p, {"n": 2})
    write_raw(p, json.dumps({"n": 3, "pad": "x" * store.MAX_SIZE}))   # valid JSON, too large
    with LogCapture() as logs:
        assert store.read_json(p) == ({"n": 1}, "bak")
    assert "too large" in logs.text()
    assert store.read_json(p, max_size=20000)[0]["n"] == 3
    rmtree(d)


def test_oversized_document_is_not_written():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})
    raises(ValueError, store.write_json, p, {"pad": "x" * store.MAX_SIZE})
    assert store.read_json(p) == ({"n": 1}, "main")
    assert names(d) == ["doc.json"]
    rmtree(d)


def test_partial_leftover_tmp_is_ignored_and_replaced():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})
    write_raw(p + ".tmp", "{\"n\": 9")            # a write cut short
    assert store.read_json(p) == ({"n": 1}, "main")
    store.write_json(p, {"n": 2})
    assert names(d) == ["doc.json", "doc.json.bak"]
    assert store.read_json(p) == ({"n": 2}, "main")
    rmtree(d)


def test_complete_tmp_is_used_only_when_nothing_better_exists():
    d = scratch()
    p = d + "doc.json"
    write_raw(p + ".tmp", "{\"n\": 5}")           # cut after the tmp was written, before its rename
    assert store.read_json(p, _positive_n) == ({"n": 5}, "tmp")
    write_raw(p + ".bak", "{\"n\": 4}")
    assert store.read_json(p, _positive_n) == ({"n": 4}, "bak")
    write_raw(p + ".bak", "{")
    write_raw(p + ".tmp", "{\"n\": 0}")           # complete but rejected by the check
    assert store.read_json(p, _positive_n) == (None, "broken")
    rmtree(d)


def test_writing_over_a_broken_file_keeps_the_last_good_copy():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})
    store.write_json(p, {"n": 2})
    write_raw(p, "{\"n\": 0}")                     # readable JSON, but rejected by the check
    store.write_json(p, {"n": 3}, _positive_n)
    assert json.loads(read_raw(p + ".bak")) == {"n": 1}
    assert store.read_json(p, _positive_n) == ({"n": 3}, "main")
    rmtree(d)


def _crash_every_step(fat):
    at = 1
    while True:
        d = scratch()
        p = d + "doc.json"
        store.write_json(p, {"n": 1})
        store.write_json(p, {"n": 2})
        fs = CrashingFs(at, fat)
        crashed = with_fs(store, fs, lambda p=p: store.write_json(p, {"n": 3}, _positive_n))
        got, source = store.read_json(p, _positive_n)
        assert got in ({"n": 2}, {"n": 3}), (at, got, source, names(d))
        if crashed is None:
            assert (got, source) == ({"n": 3}, "main")
        # the device boots again and writes: everything is in order afterwards
        store.write_json(p, {"n": 4}, _positive_n)
        assert store.read_json(p, _positive_n) == ({"n": 4}, "main")
        assert json.loads(read_raw(p + ".bak")) in ({"n": 2}, {"n": 3})
        assert names(d) == ["doc.json", "doc.json.bak"]
        rmtree(d)
        if crashed is None:
            return at
        at += 1


def test_a_crash_at_any_step_leaves_the_old_or_the_new_content():
    assert _crash_every_step(fat=False) >= 4   # open, write, rename to .bak, rename onto main


def test_a_crash_at_any_step_on_fat_leaves_the_old_or_the_new_content():
    assert _crash_every_step(fat=True) >= 6    # FAT adds removes before two renames


def test_a_failed_write_changes_nothing_and_leaves_no_tmp():
    d = scratch()
    p = d + "doc.json"
    store.write_json(p, {"n": 1})

    class FullFs(CrashingFs):
        def open(self, path, mode="r"):
            if "w" in mode:
                f = open(path, mode)
                f.close()
                raise OSError(28)     # ENOSPC
            return open(path, mode)

    err = []
    with_fs(store, FullFs(0), lambda: err.append(raises(OSError, store.write_json, p, {"n": 2})))
    assert len(err) == 1
    assert names(d) == ["doc.json"]
    assert store.read_json(p) == ({"n": 1}, "main")
    rmtree(d)
