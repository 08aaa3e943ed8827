"""DNS answers checked by a real DNS library (dnspython): any bytes in, None or a well-formed reply out."""
import dns.flags
import dns.message
import dnsreply as fw_dns
from hypothesis import given, settings
from hypothesis import strategies as st

IP = bytes([192, 168, 251, 1])

names = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
                 min_size=1, max_size=5).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_dropped_or_answered_well_formed(data):
    r = fw_dns.answer(data, IP)
    if r is not None:
        msg = dns.message.from_wire(r)
        assert msg.flags & dns.flags.QR and msg.rcode() == 0


@settings(max_examples=200, deadline=None)
@given(names, st.sampled_from(["A", "AAAA", "MX", "TXT", "ANY", "HTTPS", "SRV"]), st.booleans())
def test_real_queries_get_the_portal_for_a_and_empty_otherwise(name, rdtype, edns):
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    r = dns.message.from_wire(fw_dns.answer(q.to_wire(), IP))
    assert r.id == q.id and r.question == q.question and r.rcode() == 0
    if rdtype == "A":
        assert [rr.address for rrset in r.answer for rr in rrset] == ["192.168.251.1"]
    else:
        assert r.answer == []
