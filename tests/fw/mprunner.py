# Runs one firmware test module on MicroPython and prints one @@RESULT line per test.
import io
import json
import sys


def _trace(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    return buf.getvalue()


def main(modname):
    try:
        mod = __import__(modname)
    except Exception as e:  # every test of the module fails with the import error
        print("import of %s failed on MicroPython:\n%s" % (modname, _trace(e)))
        return
    for name in sorted(dir(mod)):
        fn = getattr(mod, name)
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
            ok, text = True, ""
        except Exception as e:
            ok, text = False, _trace(e)
        print("@@RESULT " + json.dumps({"name": name, "ok": ok, "text": text}))


main(sys.argv[1])
