# p256.py: ECDSA P-256 verification against fixed vectors of an independent implementation, its sliced
# generator, and bad input answered False without an exception.
import p256
from p256_vectors import VECTORS


def _h(text):
    return bytes.fromhex(text)


def _vector(name):
    for row in VECTORS:
        if row[0] == name:
            return _h(row[1]), _h(row[2]), _h(row[3])
    raise KeyError(name)


def test_every_vector_gets_the_answer_of_an_independent_implementation():
    wrong = []
    for name, pub, digest, sig, valid in VECTORS:
        if p256.verify(_h(pub), _h(digest), _h(sig)) is not valid:
            wrong.append(name)
    assert not wrong, "wrong answer for %s" % wrong
    # The set is not one-sided: both answers occur, including the edge cases.
    names = [row[0] for row in VECTORS if row[4]]
    assert "valid_key_is_g" in names and "valid_key_is_minus_g" in names and "valid_x_of_r_above_n" in names
    assert len(names) < len(VECTORS) - 8


def test_steps_yield_slices_then_one_result_then_stop():
    pub, digest, sig = _vector("valid")
    results = list(p256.verify_steps(pub, digest, sig))
    assert results[-1] is True
    assert all(r is None for r in results[:-1])
    # 256 bits in slices of SLICE_BITS, plus the slices of the set-up (the two inversions).
    assert len(results) - 1 >= 256 // p256.SLICE_BITS
    finer = list(p256.verify_steps(pub, digest, sig, slice_bits=2))
    assert finer[-1] is True and len(finer) - 1 >= 128
    bad = list(p256.verify_steps(pub, _h("00" * 32), sig))
    assert bad[-1] is False and all(r is None for r in bad[:-1])


def test_buffers_of_any_kind_are_accepted():
    pub, digest, sig = _vector("valid")
    assert p256.verify(bytearray(pub), memoryview(digest), bytearray(sig)) is True
    assert p256.verify(memoryview(b"x" + pub)[1:], digest, sig) is True


def test_bad_input_is_false_not_an_exception():
    pub, digest, sig = _vector("valid")
    cases = (
        (pub[:63], digest, sig), (pub + b"\x00", digest, sig), (b"\x04" + pub, digest, sig),
        (pub, digest[:31], sig), (pub, digest + b"\x00", sig), (pub, b"", sig),
        (pub, digest, sig[:63]), (pub, digest, sig + b"\x00"),
        (None, digest, sig), (pub, None, sig), (pub, digest, None),
        (pub.hex(), digest, sig), (pub, digest.hex(), sig), (pub, digest, 12345), (list(pub), digest, sig),
        (b"\xff" * 64, digest, sig),                        # coordinates above p
        (pub, digest, b"\xff" * 64),                        # r and s above n
    )
    for i, (k, d, s) in enumerate(cases):
        assert p256.verify(k, d, s) is False, "case %d" % i
        steps = list(p256.verify_steps(k, d, s))
        assert steps == [False], "case %d: %r" % (i, steps)


def test_public_key_check():
    pub = _vector("valid")[0]
    assert p256.public_key_ok(pub) and p256.public_key_ok(bytearray(pub))
    assert p256.public_key(pub) == (int.from_bytes(pub[:32], "big"), int.from_bytes(pub[32:], "big"))
    off = bytearray(pub)
    off[63] ^= 1
    for bad in (bytes(off), bytes(64), pub[:32], pub + b"\x00", None, "ab" * 64):
        assert not p256.public_key_ok(bad)
    # The generator is on the curve; the same point with a coordinate not reduced mod p is not a key.
    assert p256.public_key_ok(p256.GX.to_bytes(32, "big") + p256.GY.to_bytes(32, "big"))
    assert p256._on_curve(p256.GX, p256.GY)
    assert not p256._on_curve(p256.GX + p256.P, p256.GY)
    assert not p256._on_curve(p256.GX, p256.GY + p256.P)
