"""settings.apply_changes against arbitrary JSON-like changes: a valid document or a SettingsError."""
import copy
import json

import settings
import store
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from settings import DEFAULTS, SettingsError, apply_changes, public_view, validate

TOP_KEYS = list(DEFAULTS) + ["unknown"]
MQTT_KEYS = list(DEFAULTS["mqtt"]) + ["password_set", "unknown"]
CAL_KEYS = list(DEFAULTS["calibration"]) + ["unknown"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.integers(-5, 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.floats(-25, 4100)
           | st.text(max_size=300) | st.sampled_from(["home", "public", "ampguard", "ca.pem", "", "a/b"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
near_lists = st.lists(st.booleans() | st.floats(-25, 25) | st.integers(-1, 3), min_size=2, max_size=4)


def keyed(keys, values):
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), values, max_size=len(keys))


def gains(lo, hi):
    return st.lists(st.floats(lo, hi) | st.integers(-1, 3), min_size=3, max_size=3) | near_lists


# Per setting: values around its rules, valid ones often, so that accepted changes get exercised too.
mqtt_plausible = {
    "host": st.sampled_from(["", "broker.lan", "10.0.0.2", "a b", "h:1"]) | st.text(max_size=260),
    "port": st.integers(-1, 65537) | st.sampled_from([1883, 8883.0, 8883.5]),
    "tls": st.booleans() | st.sampled_from([0, 1, "true"]),
    "username": st.none() | st.text(max_size=130),
    "password": st.none() | st.text(max_size=130),
    "password_set": st.booleans(),
    "prefix": st.sampled_from(["ampguard", "a/b", "/a", "a/", "a//b", "$SYS", "a+b", "x" * 65])
    | st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), min_size=1, max_size=66),
    "ca_file": st.sampled_from(["ca.pem", "my-ca.crt", "../x", ".hidden", ""]) | st.text(max_size=70),
}
plausible = {
    "interval_s": st.integers(0, 61) | st.floats(0.5, 61) | st.booleans(),
    "sensor": st.sampled_from(["home", "public", "HOME", None]),
    "phases": st.sampled_from([1, 2, 3, 3.0, 1.5, True, "3"]),
    "voltage_inputs": st.sampled_from([1, 3, 0, 1.0, False]),
    "generation": st.booleans() | st.sampled_from([0, "false", None]),
    "invert": st.lists(st.booleans(), min_size=3, max_size=3) | near_lists,
    "supply_max_a": st.none() | st.floats(-1, 4001) | st.integers(-1, 4001) | st.booleans(),
    "mqtt": st.fixed_dictionaries({}, optional=mqtt_plausible) | json_values,
    "ha_discovery": st.booleans() | st.none(),
    "calibration": st.fixed_dictionaries({}, optional={
        "v_gain": gains(0.4, 2.1), "i_gain": gains(0.4, 2.1), "i_phase_deg": gains(-21, 21)}) | json_values,
}

# Changes shaped like real ones (known keys, plausible values) as well as plain garbage.
changes_strategy = (
    json_values
    | keyed(TOP_KEYS, json_values | near_lists
            | keyed(MQTT_KEYS, json_values)
            | keyed(CAL_KEYS, near_lists | json_values))
    | st.fixed_dictionaries({}, optional=plausible)
    | st.sampled_from(sorted(plausible)).flatmap(lambda k: st.fixed_dictionaries({k: plausible[k]}))
    | st.sampled_from(sorted(mqtt_plausible)).flatmap(
        lambda k: st.fixed_dictionaries({"mqtt": st.fixed_dictionaries({k: mqtt_plausible[k]})}))
)

valid_docs = st.builds(
    lambda interval, sensor, phases, inv, fuse, port, pw: validate({
        "interval_s": interval, "sensor": sensor, "phases": phases, "invert": inv, "supply_max_a": fuse,
        "mqtt": {"port": port, "password": pw, "host": "broker.lan"}}),
    st.floats(1, 60), st.sampled_from(["home", "public"]), st.sampled_from([1, 3]),
    st.lists(st.booleans(), min_size=3, max_size=3), st.none() | st.floats(0.5, 4000),
    st.integers(1, 65535),
    st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), max_size=128))


@hsettings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_docs, changes_strategy)
def test_changes_give_a_valid_document_or_a_field_named_error(current, changes):
    current_before = copy.deepcopy(current)
    changes_before = copy.deepcopy(changes)
    try:
        new = apply_changes(current, changes)
    except SettingsError as e:
        assert isinstance(e.field, str) and isinstance(e.message, str) and e.message
        if isinstance(changes, dict) and e.field:       # the field is one the change named
            assert e.field in changes or e.field.split(".")[0].split("[")[0] in changes
    else:
        assert validate(new) == new                       # stable: it validates to itself
        assert set(new) == set(DEFAULTS)
        assert len(json.dumps(new).encode()) <= store.MAX_SIZE   # can always be stored
        view = public_view(new)
        assert "password" not in view["mqtt"]
        for key, value in changes.items():
            if not isinstance(value, dict):
                assert new[key] == value or key in ("mqtt",)
    assert repr(current) == repr(current_before)           # never mutated (repr: NaN-safe)
    assert repr(changes) == repr(changes_before)


@hsettings(max_examples=300, deadline=None)
@given(json_values)
def test_validate_of_any_stored_content_gives_settings_or_settings_error(doc):
    try:
        result = validate(doc)
    except SettingsError as e:
        assert isinstance(e.field, str)
    else:
        assert settings.validate(result) == result
