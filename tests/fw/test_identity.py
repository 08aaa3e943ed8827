# identity.py: serial number and PIN from manufacturing, the access point name.
import identity
from fwfiles import LogCapture, names, rmtree, scratch, write_raw
from fwtest import raises
from identity import IdentityError, ap_ssid, validate_pin, validate_serial

GOOD_SERIALS = ("2312000042G", "ABCDG", "A1B2C3D4E5F6G7H8I9JG", "0000G")
BAD_SERIALS = ("", "123G", "2312000042", "2312000042g", "2312-00042G", "2312 00042G", "A" * 20 + "G",
               "23120000ÄG", None, 2312000042, ["2312000042G"])
GOOD_PINS = ("12345678", "00000000")
BAD_PINS = ("1234567", "123456789", "1234567a", "1234 678", "١٢٣٤٥٦٧٨", 12345678, None, "")


def test_serial_rules():
    for s in GOOD_SERIALS:
        assert validate_serial(s) == s
    for s in BAD_SERIALS:
        e = raises(ValueError, validate_serial, s)
        assert "serial" in str(e), s


def test_pin_rules_and_messages_never_echo_the_pin():
    for p in GOOD_PINS:
        assert validate_pin(p) == p
    for p in BAD_PINS:
        e = raises(ValueError, validate_pin, p)
        assert "PIN" in str(e)
        assert not p or str(p) not in str(e), p


def test_ap_ssid_is_prefix_and_last_five_characters():
    assert ap_ssid("2312000042G") == "Amp Guard_0042G"
    assert ap_ssid("ABCDG") == "Amp Guard_ABCDG"


def test_save_and_load_round_trip():
    d = scratch()
    identity.save(d, "2312000042G", "12345678")
    assert names(d) == ["identity.json"]
    with LogCapture() as logs:
        assert identity.load(d) == ("2312000042G", "12345678")
    assert "12345678" not in logs.text()
    rmtree(d)


def test_save_refuses_bad_values_and_stores_nothing():
    d = scratch()
    raises(IdentityError, identity.save, d, "2312000042X", "12345678")
    raises(IdentityError, identity.save, d, "2312000042G", "1234")
    assert names(d) == []
    rmtree(d)


def test_load_explains_a_missing_or_broken_identity():
    d = scratch()
    e = raises(IdentityError, identity.load, d)
    assert "missing" in str(e) and isinstance(e, ValueError)
    write_raw(d + "identity.json", "{\"serial\": \"2312000042G\", \"pin\": \"98765\"}")
    with LogCapture() as logs:
        e = raises(IdentityError, identity.load, d)
    assert "unusable" in str(e)
    assert "PIN" in logs.text() and "98765" not in logs.text()
    rmtree(d)


def test_load_falls_back_to_the_last_good_identity():
    d = scratch()
    identity.save(d, "2312000042G", "12345678")
    identity.save(d, "2312000043G", "12345679")
    write_raw(d + "identity.json", "{\"serial\": ")
    assert identity.load(d) == ("2312000042G", "12345678")
    rmtree(d)


def test_extra_keys_from_newer_manufacturing_tools_are_tolerated():
    d = scratch()
    write_raw(d + "identity.json", "{\"serial\": \"2312000042G\", \"pin\": \"12345678\", \"hw_rev\": 3}")
    assert identity.load(d) == ("2312000042G", "12345678")
    rmtree(d)
