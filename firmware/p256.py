# ECDSA P-256 signature verification (FIPS 186-4 / SEC 1 4.1.4, curve secp256r1) in plain Python
# integers: MicroPython's long ints (MPZ) on the ESP32 and the unix port, CPython alike. It checks the
# signature of a firmware release; it only verifies (nothing secret passes here, so timing leaks nothing).
#
# u1*G + u2*Q is computed by Shamir's trick (one pass over the 256 bits: a doubling per bit, an addition of
# G, Q or G+Q per non-zero bit pair) in Jacobian coordinates, so no step needs an inversion; the two
# inversions (s mod n, and G+Q made affine once) use the extended Euclid. Work is cut into slices of a
# bounded number of point operations: verify_steps yields between them so the caller can sample.
P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b      # y^2 = x^3 - 3x + b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5

KEY_LEN = 64            # public key x||y, 32 bytes each, big-endian
SIG_LEN = 64            # signature r||s, 32 bytes each, big-endian
DIGEST_LEN = 32         # SHA-256
SLICE_BITS = 8          # bits of u1, u2 per slice: at most 2 point operations per bit


def _bytes(data, length):
    """data as bytes when it is a buffer of exactly `length` bytes, else None."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != length:
        return None
    return bytes(data)


def _on_curve(x, y):
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def public_key(pub64):
    """(x, y) of a public key given as 64 bytes x||y when it is a point of the curve, else None."""
    data = _bytes(pub64, KEY_LEN)
    if data is None:
        return None
    x = int.from_bytes(data[:32], "big")
    y = int.from_bytes(data[32:], "big")
    return (x, y) if _on_curve(x, y) else None


def public_key_ok(pub64):
    return public_key(pub64) is not None


def _inverse(a, m):
    """a^-1 mod m for a prime m and 0 < a < m (extended Euclid; about 150 rounds for 256 bits)."""
    r0, r1, x0, x1 = m, a, 0, 1
    while r1:
        q, r = divmod(r0, r1)
        r0, r1 = r1, r
        x0, x1 = x1, x0 - q * x1
    return x0 % m


# Jacobian (X, Y, Z) stands for the affine (X/Z^2, Y/Z^3); Z == 0 is the point at infinity.
def _double(x, y, z):
    # dbl-2001-b for a = -3 (Bernstein-Lange EFD); the infinity and points with y == 0 give Z == 0.
    p = P
    d = z * z % p
    g = y * y % p
    b = x * g % p
    a = 3 * (x - d) * (x + d) % p
    x3 = (a * a - 8 * b) % p
    return x3, (a * (4 * b - x3) - 8 * g * g) % p, 2 * y * z % p


def _add_affine(x1, y1, z1, x2, y2):
    # Jacobian + affine (x2, y2) ("madd"); the equal and the opposite point are handled, not assumed away.
    p = P
    if not z1:
        return x2, y2, 1
    zz = z1 * z1 % p
    h = (x2 * zz - x1) % p
    r = (y2 * zz * z1 - y1) % p
    if not h:
        return _double(x1, y1, z1) if not r else (1, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - y1 * hhh) % p, z1 * h % p


def _affine_sum(q):
    """G + Q in affine coordinates, or None when it is the infinity (Q == -G)."""
    x, y, z = _add_affine(GX, GY, 1, q[0], q[1])
    if not z:
        return None
    zi = _inverse(z, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def verify_steps(pub64, digest32, sig64, slice_bits=SLICE_BITS):
    """Check an ECDSA P-256 signature r||s (sig64) of a SHA-256 digest (digest32) by the public key
    x||y (pub64). A generator: yields None after each slice of work (at most 2 * slice_bits point
    operations), then True or False once. Bad input (wrong type or length, a key off the curve, r or s
    outside [1, n-1]) gives False, never an exception."""
    q = public_key(pub64)
    digest = _bytes(digest32, DIGEST_LEN)
    sig = _bytes(sig64, SIG_LEN)
    if q is None or digest is None or sig is None:
        yield False
        return
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        yield False
        return
    e = int.from_bytes(digest, "big")       # the digest is as long as n: no truncation
    w = _inverse(s, N)
    u1 = (e * w % N).to_bytes(32, "big")
    u2 = (r * w % N).to_bytes(32, "big")
    del e, w, sig, digest
    yield None
    # The points added by Shamir's trick, by bit pair (u2 bit, u1 bit): 1 = G, 2 = Q, 3 = G + Q (affine).
    table = (None, (GX, GY), q, _affine_sum(q))
    del q
    yield None
    x, y, z = 1, 1, 0
    bits = 0
    for i in range(32):
        a = u1[i]
        b = u2[i]
        for j in range(7, -1, -1):
            if z:
                x, y, z = _double(x, y, z)
            k = ((a >> j) & 1) | (((b >> j) & 1) << 1)
            if k:
                pt = table[k]
                if pt is not None:
                    x, y, z = _add_affine(x, y, z, pt[0], pt[1])
            bits += 1
            if bits == slice_bits:
                bits = 0
                yield None
    if not z:
        yield False         # u1*G + u2*Q is the point at infinity
        return
    # The affine x of the sum is X/Z^2 in [0, p); x mod n == r means x is r, or r + n when that is < p.
    zz = z * z % P
    ok = (x - r * zz) % P == 0 or (r + N < P and (x - (r + N) * zz) % P == 0)
    yield ok


def verify(pub64, digest32, sig64):
    """verify_steps run to its end: True when the signature is valid."""
    for result in verify_steps(pub64, digest32, sig64):
        if result is not None:
            return result
    return False
