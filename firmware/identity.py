# Identity set at manufacturing: serial number and 8-digit PIN (the AP password), in identity.json.
# No message here ever contains the PIN.
import store

FILE = "identity.json"
AP_PREFIX = "Amp Guard_"


class IdentityError(ValueError):
    pass


def validate_serial(serial):
    """The serial if valid: 5-20 characters, uppercase letters and digits, ending in "G"."""
    if not isinstance(serial, str) or not 5 <= len(serial) <= 20:
        raise IdentityError("serial number must be 5 to 20 characters")
    for c in serial:
        if not ("A" <= c <= "Z" or "0" <= c <= "9"):
            raise IdentityError("serial number must be uppercase letters and digits only")
    if serial[-1] != "G":
        raise IdentityError("serial number must end in 'G'")
    return serial


def validate_pin(pin):
    """The PIN if valid: a string of exactly 8 digits."""
    if not isinstance(pin, str) or len(pin) != 8:
        raise IdentityError("PIN must be a string of exactly 8 digits")
    for c in pin:
        if not "0" <= c <= "9":
            raise IdentityError("PIN must be a string of exactly 8 digits")
    return pin


def ap_ssid(serial):
    """The access point name: "Amp Guard_" and the serial's last five characters."""
    return AP_PREFIX + serial[-5:]


def _check(doc):
    if not isinstance(doc, dict):
        raise IdentityError("identity must be a JSON object")
    validate_serial(doc.get("serial"))
    validate_pin(doc.get("pin"))


def load(flash_dir):
    """(serial, pin) from identity.json; IdentityError when it is missing or invalid."""
    path = store.join(flash_dir, FILE)
    doc, source = store.read_json(path, _check, 1024)
    if doc is None:
        if source == "missing":
            raise IdentityError("%s missing: serial and PIN are set at manufacturing" % path)
        raise IdentityError("%s unusable (see log): serial and PIN are set at manufacturing" % path)
    return doc["serial"], doc["pin"]


def save(flash_dir, serial, pin):
    """Store a validated serial and PIN atomically (manufacturing)."""
    doc = {"serial": validate_serial(serial), "pin": validate_pin(pin)}
    store.write_json(store.join(flash_dir, FILE), doc, _check, 1024)
