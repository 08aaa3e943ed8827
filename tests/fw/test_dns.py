# The captive DNS answers (contract §2), on both runtimes; the random corpus is the unix port's fuzzing.
import random

import dnsreply as dns
import inet

IP = inet.ipv4_bytes("192.168.251.1")


def query(name="connectivitycheck.gstatic.com", qtype=1, qclass=1, qid=0x1234, flags=0x0100, edns=False):
    q = bytearray()
    q += bytes([qid >> 8, qid & 255, flags >> 8, flags & 255, 0, 1, 0, 0, 0, 0, 0, 1 if edns else 0])
    for label in name.split("."):
        q.append(len(label))
        q += label.encode()
    q += bytes([0, qtype >> 8, qtype & 255, qclass >> 8, qclass & 255])
    if edns:
        q += bytes([0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0])     # OPT record, 1232-byte payload
    return bytes(q)


def test_a_query_gets_the_portal_address():
    q = query()
    r = dns.answer(q, IP)
    assert r[:2] == q[:2]                                   # same id
    assert r[2] & 0x80 and r[2] & 0x04 and r[2] & 0x01      # response, authoritative, RD copied
    assert r[3] & 0x0F == 0                                 # NOERROR
    assert r[4:12] == bytes([0, 1, 0, 1, 0, 0, 0, 0])
    end = len(q)
    assert r[12:end] == q[12:end]                           # the question, verbatim
    assert r[end:end + 2] == b"\xc0\x0c" and r[end + 2:end + 4] == b"\x00\x01"
    assert r[-4:] == IP and len(r) == end + 16


def test_other_types_get_an_empty_noerror_answer():
    for qtype in (28, 15, 16, 255, 65):       # AAAA, MX, TXT, ANY, HTTPS
        r = dns.answer(query(qtype=qtype), IP)
        assert r is not None and r[3] & 0x0F == 0 and r[6:8] == b"\x00\x00"
    r = dns.answer(query(qclass=3), IP)       # class CHAOS
    assert r[6:8] == b"\x00\x00"


def test_edns_queries_are_answered_without_the_opt_record():
    q = query(edns=True)
    r = dns.answer(q, IP)
    assert r[10:12] == b"\x00\x00" and r[-4:] == IP


def test_malformed_packets_are_dropped():
    good = query()
    cases = [
        b"", good[:11], good[:-1], good[:20],
        good[:2] + b"\x81\x00" + good[4:],                    # a response
        good[:2] + b"\x28\x00" + good[4:],                    # opcode 5 (update)
        good[:4] + b"\x00\x00" + good[6:],                    # no question
        good[:4] + b"\x00\x02" + good[6:],                    # two questions
        good[:6] + b"\x00\x01" + good[8:],                    # an answer in a query
        good[:12] + b"\xc0\x0c" + good[-4:],                  # a pointer to itself
        good[:12] + b"\x40" + b"a" * 64 + b"\x00" + good[-4:],  # label of 64
        query(".".join(["abcdefghi"] * 30)),                 # name over 255
        good + b"\x00" * 1300,                               # oversized
    ]
    for packet in cases:
        assert dns.answer(packet, IP) is None, packet


def test_a_random_corpus_never_raises():
    random.seed(20261123)        # MicroPython's random has no Random class: the module's own generator
    rng = random
    seeds = [query(), query(qtype=28), query(edns=True), query("a.b"), query("x" * 63)]
    answered = dropped = 0
    for _ in range(4000):
        p = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            if op == 0 and p:
                p[rng.randrange(len(p))] = rng.randrange(256)
            elif op == 1:
                p = p[:rng.randrange(len(p) + 1)]      # truncate
            elif op == 2:
                p += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
            elif p:
                i = rng.randrange(len(p))
                p[i] = 0xC0 if rng.randrange(2) else 63
        r = dns.answer(bytes(p), IP)
        if r is None:
            dropped += 1
        else:
            answered += 1
            assert r[:2] == bytes(p[:2]) and r[2] & 0x80
    assert answered > 100 and dropped > 100
