# Device entry point, run by MicroPython at boot (and by tools/sim on both runtimes): the boot loader.
# Never replaced over the air. Its logic is boot_loader.py of the factory install (imported before an
# update's folder is put first on sys.path, so never an update's copy), dropped once it has chosen:
# its code costs the running firmware no heap. It must not raise: a damaged loader starts the factory.
import sys

try:
    import boot_loader

    _trial = boot_loader.boot()
except Exception as _e:
    print("boot: %r" % (_e,))
    _trial = False
sys.modules.pop("boot_loader", None)
globals().pop("boot_loader", None)
try:
    import app

    app.main()
except Exception as _e:
    # A firmware on trial that crashes restarts at once, to be counted (on the device an uncaught
    # exception would stop at the REPL; the simulator restarts a crashed device by itself).
    if not _trial:
        raise
    sys.print_exception(_e)
    import machine

    if hasattr(machine, "reset"):
        machine.reset()
    raise
