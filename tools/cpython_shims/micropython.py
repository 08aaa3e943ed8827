"""CPython stand-in for MicroPython's `micropython` module, so pure-logic firmware runs under pytest.

The emitters become plain Python: viper integer wrap-around is NOT reproduced here, which is why
overflow bounds are proven by dedicated tests rather than by running viper code on CPython.
"""


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def alloc_emergency_exception_buf(n):
    pass


def mem_info(*args):
    pass


def kbd_intr(c):
    pass


def schedule(f, arg):
    f(arg)
