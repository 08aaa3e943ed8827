"""Run viper kernels on CPython with the ESP32's 32-bit integer semantics.

Viper ints are machine words: 32 bits on the ESP32, where they wrap silently, but 64 bits on the host,
where the same overflow never shows. Feeding the kernel Word32 values (and Word32 arrays for its
ptr32 buffers) makes every add, multiply and shift wrap at 32 bits exactly as on the device.
"""


def wrap(v):
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _v(x):
    return x.v if isinstance(x, Word32) else x


class Word32:
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = wrap(v)

    def __add__(self, o):
        return Word32(self.v + _v(o))

    __radd__ = __add__

    def __sub__(self, o):
        return Word32(self.v - _v(o))

    def __rsub__(self, o):
        return Word32(_v(o) - self.v)

    def __mul__(self, o):
        return Word32(self.v * _v(o))

    __rmul__ = __mul__

    def __rshift__(self, o):
        return Word32(self.v >> _v(o))      # arithmetic, like viper's >> on int

    def __and__(self, o):
        return Word32(self.v & _v(o))

    def __lt__(self, o):
        return self.v < _v(o)

    def __le__(self, o):
        return self.v <= _v(o)

    def __gt__(self, o):
        return self.v > _v(o)

    def __ge__(self, o):
        return self.v >= _v(o)

    def __eq__(self, o):
        return self.v == _v(o)

    def __hash__(self):
        return hash(self.v)

    def __index__(self):
        return self.v

    def __bool__(self):
        return self.v != 0


class Word32Array:
    """A ptr32 buffer: stores keep the low 32 bits; loads give a signed 32-bit word (the ESP32).

    With host=True, loads are zero-extended into plain (64-bit) ints instead, as viper does on the
    64-bit unix port, where a stored negative word reads back as a large positive number.
    """

    def __init__(self, values, host=False):
        self.words = [wrap(int(v)) for v in values]
        self.host = host

    def __getitem__(self, k):
        if self.host:
            return self.words[k] & 0xFFFFFFFF
        return Word32(self.words[k])

    def __setitem__(self, k, value):
        self.words[k] = wrap(_v(value))

    def __len__(self):
        return len(self.words)
