# settings.py: schema and defaults, field-named errors, nested merge, secrets, storage with fallback.
import settings
from fwfiles import LogCapture, names, read_raw, rmtree, scratch, write_raw
from fwtest import raises
from settings import DEFAULTS, SettingsError, apply_changes, public_view, validate

# (change, field named by the error): every rule of the schema, refused.
BAD = (
    ({"interval_s": 0}, "interval_s"),
    ({"interval_s": 0.99}, "interval_s"),
    ({"interval_s": 61}, "interval_s"),
    ({"interval_s": "5"}, "interval_s"),
    ({"interval_s": True}, "interval_s"),
    ({"interval_s": None}, "interval_s"),
    ({"interval_s": float("inf")}, "interval_s"),
    ({"interval_s": float("nan")}, "interval_s"),
    ({"sensor": "HOME"}, "sensor"),
    ({"sensor": None}, "sensor"),
    ({"sensor": 1}, "sensor"),
    ({"phases": 2}, "phases"),
    ({"phases": True}, "phases"),
    ({"phases": "3"}, "phases"),
    ({"phases": 3.5}, "phases"),
    ({"voltage_inputs": 0}, "voltage_inputs"),
    ({"voltage_inputs": False}, "voltage_inputs"),
    ({"generation": 1}, "generation"),
    ({"generation": "true"}, "generation"),
    ({"generation": None}, "generation"),
    ({"invert": [False, False]}, "invert"),
    ({"invert": [False, False, False, False]}, "invert"),
    ({"invert": True}, "invert"),
    ({"invert": {"0": True}}, "invert"),
    ({"invert": [False, 1, False]}, "invert[1]"),
    ({"invert": [False, False, None]}, "invert[2]"),
    ({"supply_max_a": 0}, "supply_max_a"),
    ({"supply_max_a": -16}, "supply_max_a"),
    ({"supply_max_a": 4000.5}, "supply_max_a"),
    ({"supply_max_a": "63"}, "supply_max_a"),
    ({"supply_max_a": False}, "supply_max_a"),
    ({"mqtt": None}, "mqtt"),
    ({"mqtt": "broker"}, "mqtt"),
    ({"mqtt": {"host": 5}}, "mqtt.host"),
    ({"mqtt": {"host": None}}, "mqtt.host"),
    ({"mqtt": {"host": "mqtt://broker"}}, "mqtt.host"),
    ({"mqtt": {"host": "broker:1883"}}, "mqtt.host"),
    ({"mqtt": {"host": "my broker"}}, "mqtt.host"),
    ({"mqtt": {"host": "b" * 254}}, "mqtt.host"),
    ({"ntp_server": ""}, "ntp_server"),               # no clock at all would leave TLS waiting forever
    ({"ntp_server": None}, "ntp_server"),
    ({"ntp_server": "ntp.lan:123"}, "ntp_server"),
    ({"mqtt": {"port": 0}}, "mqtt.port"),
    ({"mqtt": {"port": 65536}}, "mqtt.port"),
    ({"mqtt": {"port": 1883.5}}, "mqtt.port"),
    ({"mqtt": {"port": "1883"}}, "mqtt.port"),
    ({"mqtt": {"port": True}}, "mqtt.port"),
    ({"mqtt": {"tls": "yes"}}, "mqtt.tls"),
    ({"mqtt": {"tls": 0}}, "mqtt.tls"),
    ({"mqtt": {"username": 7}}, "mqtt.username"),
    ({"mqtt": {"username": "u" * 129}}, "mqtt.username"),
    ({"mqtt": {"username": "a\nb"}}, "mqtt.username"),
    ({"mqtt": {"password": ["x"]}}, "mqtt.password"),
    ({"mqtt": {"password": "p" * 129}}, "mqtt.password"),
    ({"mqtt": {"password": "tab\there"}}, "mqtt.password"),
    ({"mqtt": {"password_set": False}}, "mqtt.password_set"),
    ({"mqtt": {"prefix": ""}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "p" * 65}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "a/+/b"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "a#"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "/ampguard"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "ampguard/"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "a//b"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "$SYS"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": "amp guard"}}, "mqtt.prefix"),
    ({"mqtt": {"prefix": None}}, "mqtt.prefix"),
    ({"mqtt": {"ca_file": ""}}, "mqtt.ca_file"),
    ({"mqtt": {"ca_file": "../ca.pem"}}, "mqtt.ca_file"),
    ({"mqtt": {"ca_file": "certs/ca.pem"}}, "mqtt.ca_file"),
    ({"mqtt": {"ca_file": ".ca"}}, "mqtt.ca_file"),
    ({"mqtt": {"ca_file": None}}, "mqtt.ca_file"),
    ({"mqtt": {"server": "x"}}, "mqtt.server"),
    ({"ha_discovery": "false"}, "ha_discovery"),
    ({"calibration": []}, "calibration"),
    ({"calibration": {"v_gain": [1.0, 1.0]}}, "calibration.v_gain"),
    ({"calibration": {"v_gain": [1.0, 2.01, 1.0]}}, "calibration.v_gain[1]"),
    ({"calibration": {"i_gain": [0.49, 1.0, 1.0]}}, "calibration.i_gain[0]"),
    ({"calibration": {"i_gain": [1.0, 1.0, "1"]}}, "calibration.i_gain[2]"),
    ({"calibration": {"i_phase_deg": [0, 0, 20.5]}}, "calibration.i_phase_deg[2]"),
    ({"calibration": {"i_phase_deg": [-21, 0, 0]}}, "calibration.i_phase_deg[0]"),
    ({"calibration": {"offset": 1}}, "calibration.offset"),
    ({"unknown": 1}, "unknown"),
)


def _snapshot(doc):
    return repr(_sorted(doc))


def _sorted(v):
    # A canonical form to compare (MicroPython's json.dumps has no sort_keys).
    if isinstance(v, dict):
        return [(k, _sorted(v[k])) for k in sorted(v)]
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def test_defaults_are_valid_and_complete():
    assert validate(DEFAULTS) == DEFAULTS
    assert validate({}) == DEFAULTS
    assert apply_changes(DEFAULTS, {}) == DEFAULTS
    assert DEFAULTS["interval_s"] == 1 and DEFAULTS["mqtt"]["port"] == 1883
    assert DEFAULTS["mqtt"]["host"] == "" and DEFAULTS["mqtt"]["prefix"] == "ampguard"
    assert DEFAULTS["invert"] == [False, False, False] and DEFAULTS["supply_max_a"] is None


def test_every_bad_value_is_refused_naming_its_field_and_nothing_changes():
    current = apply_changes(DEFAULTS, {"mqtt": {"host": "broker.lan", "password": "s3cret!"}})
    before = _snapshot(current)
    for change, field in BAD:
        e = raises(SettingsError, apply_changes, current, change)
        assert e.field == field, (change, e.field, field)
        assert isinstance(e, ValueError) and e.message and field in str(e)
        assert "s3cret" not in str(e)
        assert _snapshot(current) == before, change


def test_first_bad_field_is_reported_in_schema_order():
    e = raises(SettingsError, apply_changes, DEFAULTS, {"ha_discovery": 1, "interval_s": 0})
    assert e.field == "interval_s"
    e = raises(SettingsError, apply_changes, DEFAULTS, {"interval_s": 0, "nope": 1})
    assert e.field == "nope"             # an unknown key is reported before bad values


def test_a_change_that_is_not_an_object_is_refused():
    for change in (None, [], "interval_s=5", 5):
        e = raises(SettingsError, apply_changes, DEFAULTS, change)
        assert e.field == ""


def test_good_values_are_accepted():
    good = {"interval_s": 60, "sensor": "public", "phases": 1, "voltage_inputs": 3, "generation": True,
            "invert": [True, False, True], "supply_max_a": 63, "ha_discovery": True,
            "ntp_server": "192.168.1.1",
            "mqtt": {"host": "192.168.1.10", "port": 8883, "tls": True, "username": "meter",
                     "password": "pä ss wörd", "prefix": "site-1/meters", "ca_file": "my_ca.pem"},
            "calibration": {"v_gain": [0.5, 1.0, 2.0], "i_gain": [1.01, 0.99, 1],
                            "i_phase_deg": [-20, 0.5, 20]}}
    assert apply_changes(DEFAULTS, good) == good
    assert apply_changes(DEFAULTS, {"interval_s": 2.5})["interval_s"] == 2.5
    assert apply_changes(DEFAULTS, {"supply_max_a": 4000})["supply_max_a"] == 4000
    assert apply_changes(DEFAULTS, {"supply_max_a": 0.1})["supply_max_a"] == 0.1
    assert apply_changes(good, {"supply_max_a": None})["supply_max_a"] is None
    assert apply_changes(DEFAULTS, {"mqtt": {"host": "b" * 253}})["mqtt"]["host"] == "b" * 253


def test_integral_floats_count_as_whole_numbers_and_are_stored_as_int():
    s = apply_changes(DEFAULTS, {"phases": 1.0, "voltage_inputs": 3.0, "mqtt": {"port": 8883.0}})
    assert s["phases"] == 1 and isinstance(s["phases"], int)
    assert s["voltage_inputs"] == 3 and isinstance(s["voltage_inputs"], int)
    assert s["mqtt"]["port"] == 8883 and isinstance(s["mqtt"]["port"], int)


def test_empty_user_name_and_password_mean_none():
    s = apply_changes(DEFAULTS, {"mqtt": {"username": "u", "password": "p"}})
    s = apply_changes(s, {"mqtt": {"username": "", "password": ""}})
    assert s["mqtt"]["username"] is None and s["mqtt"]["password"] is None


def test_nested_objects_merge_key_by_key_and_input_is_not_mutated():
    current = apply_changes(DEFAULTS, {"mqtt": {"host": "broker", "password": "pw"}})
    before = _snapshot(current)
    new = apply_changes(current, {"mqtt": {"port": 8883}})
    assert new["mqtt"] == dict(current["mqtt"], port=8883)
    assert _snapshot(current) == before
    new["mqtt"]["host"] = "changed"          # a deep copy: the result shares nothing with its input
    new["invert"][0] = True
    new["calibration"]["v_gain"][0] = 1.5
    assert _snapshot(current) == before
    new = apply_changes(current, {"calibration": {"i_phase_deg": [1, 2, 3]}})
    assert new["calibration"]["v_gain"] == [1.0, 1.0, 1.0]
    assert new["calibration"]["i_phase_deg"] == [1, 2, 3]
    assert _snapshot(DEFAULTS) == _snapshot(validate({}))   # DEFAULTS untouched too


def test_validate_fills_keys_missing_from_older_documents_and_refuses_unknown_ones():
    assert validate({"interval_s": 5, "mqtt": {"host": "h"}})["mqtt"]["port"] == 1883
    assert raises(SettingsError, validate, {"future_key": 1}).field == "future_key"
    assert raises(SettingsError, validate, [1, 2]).field == ""


def test_public_view_leaves_out_the_password():
    s = apply_changes(DEFAULTS, {"mqtt": {"username": "u", "password": "topsecret"}})
    view = public_view(s)
    assert "password" not in view["mqtt"] and view["mqtt"]["password_set"] is True
    assert "topsecret" not in repr(view)
    assert view["mqtt"]["username"] == "u"
    assert s["mqtt"]["password"] == "topsecret"      # the settings themselves are untouched
    assert public_view(DEFAULTS)["mqtt"]["password_set"] is False
    assert "password" in DEFAULTS["mqtt"]


def test_settings_load_missing_gives_defaults_and_update_stores():
    d = scratch()
    s = settings.Settings(d)
    assert s.path == d + "settings.json"
    assert s.load() == DEFAULTS and s.source == "defaults"
    new = s.update({"interval_s": 5, "mqtt": {"port": 8883}})
    assert new["interval_s"] == 5 and s.current == new
    again = settings.Settings(d)
    assert again.load() == new and again.source == "main"
    rmtree(d)


def test_flash_dir_root_gives_root_path():
    assert settings.Settings("/").path == "/settings.json"


def test_a_refused_update_stores_and_changes_nothing():
    d = scratch()
    s = settings.Settings(d)
    s.load()
    s.update({"interval_s": 5})
    s.update({"interval_s": 6})
    files = names(d)
    raw = read_raw(d + "settings.json")
    current = _snapshot(s.current)
    e = raises(SettingsError, s.update, {"interval_s": 7, "mqtt": {"port": 0}})
    assert e.field == "mqtt.port"
    assert names(d) == files and read_raw(d + "settings.json") == raw
    assert _snapshot(s.current) == current
    rmtree(d)


def test_an_update_that_changes_nothing_does_not_write():
    d = scratch()
    s = settings.Settings(d)
    s.load()
    s.update({"interval_s": 5})
    assert names(d) == ["settings.json"]
    s.update({"interval_s": 5})
    assert names(d) == ["settings.json"]     # no second write, so no .bak
    rmtree(d)


def test_broken_settings_fall_back_to_last_good_then_defaults():
    d = scratch()
    p = d + "settings.json"
    s = settings.Settings(d)
    s.load()
    s.update({"interval_s": 5})
    s.update({"interval_s": 6})
    for broken in ("{\"interval_s\": 6", "{\"interval_s\": 0}", "{\"new_feature\": true}", "[]", "x" * 9000):
        write_raw(p, broken)
        with LogCapture() as logs:
            assert settings.Settings(d).load()["interval_s"] == 5
        assert "skipped" in logs.text() and ".bak" in logs.text()
    write_raw(p + ".bak", "{\"phases\": 2}")
    with LogCapture() as logs:
        s2 = settings.Settings(d)
        assert s2.load() == DEFAULTS and s2.source == "defaults"
    assert "using defaults" in logs.text()
    s2.update({"interval_s": 9})            # the next save repairs the files
    assert settings.Settings(d).load()["interval_s"] == 9
    rmtree(d)


def test_the_password_never_reaches_the_log():
    d = scratch()
    with LogCapture() as logs:
        s = settings.Settings(d)
        s.load()
        s.update({"mqtt": {"password": "hunter2secret"}})
        raises(SettingsError, s.update, {"mqtt": {"password": "bad\x01hunter2secret"}})
        write_raw(d + "settings.json", "{\"mqtt\": {\"password\": \"hunter2secret\", \"port\": 0}}")
        settings.Settings(d).load()
    assert "hunter2secret" not in logs.text()
    assert "mqtt.port" in logs.text()
    rmtree(d)
