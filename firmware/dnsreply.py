# Captive-portal DNS (contract §2): every A query is answered with the portal's address, any other query
# gets an empty NOERROR answer, and anything malformed is dropped. Pure logic on bytes; bounds-checked
# everywhere, so no packet can make it read past its end or loop.
MAX_PACKET = 1232            # beyond a sane EDNS UDP size: drop
TTL = 60
TYPE_A = 1
CLASS_IN = 1


def _question_end(packet):
    """Index just past the single question (name, type, class), or -1 if it is malformed."""
    i = 12
    n = len(packet)
    total = 0
    while True:
        if i >= n:
            return -1
        length = packet[i]
        if length == 0:
            i += 1
            break
        if length > 63:              # a compression pointer (or reserved bits) inside a question
            return -1
        total += length + 1
        if total > 255:
            return -1
        i += 1 + length
    if i + 4 > n:
        return -1
    return i + 4


def answer(packet, ip4):
    """The reply to one DNS query datagram, or None to drop it; ip4: the 4 bytes of the address every
    A query gets (inet.ipv4_bytes)."""
    n = len(packet)
    if n < 12 or n > MAX_PACKET:
        return None
    flags = packet[2]
    if flags & 0x80 or (flags >> 3) & 0x0F:         # a response, or not a standard query
        return None
    if packet[4] != 0 or packet[5] != 1:            # exactly one question
        return None
    if packet[6] or packet[7] or packet[8] or packet[9]:   # queries carry no answers or authority
        return None
    end = _question_end(packet)
    if end < 0:
        return None
    qtype = (packet[end - 4] << 8) | packet[end - 3]
    qclass = (packet[end - 2] << 8) | packet[end - 1]
    is_a = qtype == TYPE_A and qclass == CLASS_IN
    out = bytearray(end + (16 if is_a else 0))
    out[0] = packet[0]
    out[1] = packet[1]
    out[2] = 0x84 | (flags & 0x01)                  # QR, AA, RD copied
    out[3] = 0x00                                   # RA 0, RCODE NOERROR
    out[5] = 1
    out[7] = 1 if is_a else 0
    out[12:end] = packet[12:end]                    # the question, verbatim (EDNS records dropped)
    if is_a:
        out[end:end + 12] = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00" + bytes([TTL]) + b"\x00\x04"
        out[end + 12:end + 16] = ip4
    return bytes(out)
