"""tools/balancer/group.py: a group file is validated whole; every bad value is refused naming its field;
defaults are filled in as docs/balancer.md ("The group file") says."""
import copy
import json

import pytest
from balancer import group

GOOD = {
    "group": "garage-1",
    "meter": "2312000042G",
    "phases_order": [3, 2, 1],
    "max_a_online": [20, 20, 16],
    "max_a_offline": [10, 10, 10],
    "min_a": 6,
    "supply_max_a": 25,
    "chargers_included": True,
    "margin_a": 1.5,
    "chargers": [{"id": "CP1", "phases": 3, "phase": 1, "offline_a": 6, "offline_phase": 1},
                 {"id": "CP2", "phases": 1, "phase": 2, "offline_a": 0, "offline_phase": 3}],
}
MINIMAL = {"group": "g", "meter": "M1", "supply_max_a": 25, "chargers": [{"id": "CP1"}]}


def with_(path, value, doc=GOOD):
    """A copy of `doc` with the value at a dotted path ("chargers[1].phase") set, or removed (...)."""
    doc = copy.deepcopy(doc)
    obj, key = doc, None
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        obj = obj[int(part)] if part.isdigit() else obj[part]
    key = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is ...:
        del obj[key]
    else:
        obj[key] = value
    return doc


def refused(doc):
    with pytest.raises(group.GroupError) as e:
        group.validate(doc)
    return e.value


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "garage.json"
    path.write_text(json.dumps(GOOD))
    g = group.load(path)
    assert g == GOOD          # complete already: nothing added, nothing changed


def test_defaults():
    g = group.validate(MINIMAL)
    assert g == {"group": "g", "meter": "M1", "phases_order": [1, 2, 3], "supply_max_a": 25, "min_a": 6,
                 "margin_a": 1, "max_a_online": [25, 25, 25], "max_a_offline": [6, 6, 6],
                 "chargers_included": True,
                 "chargers": [{"id": "CP1", "phases": 3, "phase": 1, "offline_a": 6, "offline_phase": 1}]}
    # a charger's offline phase defaults to its phase; offline_a and max_a_offline to min_a
    g = group.validate(dict(MINIMAL, min_a=8, chargers=[{"id": "x", "phases": 1, "phase": 3}]))
    assert g["chargers"][0] == {"id": "x", "phases": 1, "phase": 3, "offline_a": 8, "offline_phase": 3}
    assert g["max_a_offline"] == [8, 8, 8]


def test_whole_numbers_of_enumerations_become_ints():
    g = group.validate(with_("chargers[0].phases", 3.0, with_("phases_order", [3.0, 1, 2])))
    assert g["chargers"][0]["phases"] == 3 and type(g["chargers"][0]["phases"]) is int
    assert g["phases_order"] == [3, 1, 2] and all(type(p) is int for p in g["phases_order"])


BAD = [
    # (field, bad values)
    ("group", ["", "a b", "g/1", "x" * 65, 7, None, "grüppe", "+", "#"]),
    ("meter", ["", "M 1", "a/b", 42, None, "x" * 65]),
    ("phases_order", [[1, 2], [1, 2, 2], [0, 1, 2], [1, 2, 3, 1], "123", None, [1, 2, "3"], [True, 2, 3]]),
    ("supply_max_a", [0, -5, 4001, "25", None, True, float("nan")]),
    ("min_a", [5.9, 0, 81, "6", None, False]),
    ("margin_a", [-1, 101, "1", None]),
    ("max_a_online", [[20, 20], [20, 20, 20, 20], 20, None]),
    ("max_a_online[0]", [-1, 26, "20", None, True]),
    ("max_a_online[2]", [25.5]),
    ("max_a_offline", [[10, 10], {}, "10"]),
    ("max_a_offline[1]", [-0.1, 26, None, False]),
    ("chargers_included", [1, 0, "true", None]),
    ("chargers", [[], {}, "CP1", None, [{"id": "x%d" % i} for i in range(257)]]),
    ("chargers[0]", ["CP1", 7, None, []]),
    ("chargers[1].id", ["", "a b", "x" * 49, 3, None, "CP1"]),
    ("chargers[1].phases", [2, 0, "1", None, True]),
    ("chargers[1].phase", [0, 4, 1.5, "1", None]),
    ("chargers[1].offline_a", [-1, 3, 5.9, 26, "6", None]),
    ("chargers[1].offline_phase", [0, 4, "2", None, 2.5]),
]


@pytest.mark.parametrize("field,values", BAD, ids=[b[0] for b in BAD])
def test_every_bad_value_is_refused_naming_its_field(field, values):
    for value in values:
        e = refused(with_(field, value))
        assert e.field == field, (value, e)
        assert str(e).startswith(field + " must"), str(e)


def test_messages_say_what_the_field_must_be():
    e = refused(with_("chargers[1].offline_phase", 4))
    assert str(e) == "chargers[1].offline_phase must be 1, 2 or 3"
    assert str(refused(with_("chargers[0].phases", 2))) == "chargers[0].phases must be 1 or 3"
    assert str(refused(with_("phases_order", [1, 1, 3]))) == (
        "phases_order must be the phases 1, 2 and 3 in some order, e.g. [1, 2, 3] or [3, 2, 1]")
    assert str(refused(with_("max_a_online[1]", 30))) == "max_a_online[1] must be a number from 0 to 25"
    assert str(refused(with_("chargers[1].id", "CP1"))) == (
        "chargers[1].id must be unique (chargers[0] has the same id)")
    assert "at least 6" in str(refused(with_("chargers[1].offline_a", 4)))


def test_required_fields():
    for field in ("group", "meter", "supply_max_a", "chargers", "chargers[0].id"):
        e = refused(with_(field, ...))
        assert e.field == field and e.message == "is required"


def test_unknown_fields_are_refused():
    e = refused(dict(GOOD, max_a=5))
    assert (e.field, e.message) == ("max_a", "is not a group setting")
    e = refused(with_("chargers[1].power", 7))
    assert e.field == "chargers[1].power"


def test_min_and_margin_must_leave_room_to_charge():
    e = refused(dict(MINIMAL, supply_max_a=6.5, min_a=6, margin_a=1))
    assert e.field == "min_a" and "supply_max_a" in e.message
    assert group.validate(dict(MINIMAL, supply_max_a=7, min_a=6, margin_a=1))["supply_max_a"] == 7


def test_a_document_that_is_no_object_is_refused():
    for doc in ([], "x", 3, None):
        assert refused(doc).field == ""


def test_a_bad_file_is_refused_whole_with_its_path(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(with_("chargers[1].offline_phase", 7)))
    with pytest.raises(group.GroupError) as e:
        group.load(path)
    assert str(e.value) == "%s: chargers[1].offline_phase must be 1, 2 or 3" % path
    for text, why in (("{", "is not valid JSON"), ("", "is not valid JSON"), ("x" * 70000, "too large")):
        path.write_text(text)
        with pytest.raises(group.GroupError) as e:
            group.load(path)
        assert e.value.field == "" and why in e.value.message and str(path) in str(e.value)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(group.GroupError, match="UTF-8"):
        group.load(path)
    with pytest.raises(group.GroupError, match="cannot be read"):
        group.load(tmp_path / "missing.json")


def test_load_all_keeps_one_group_per_meter(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.json", "b.json", "c.json"))
    a.write_text(json.dumps(GOOD))
    b.write_text(json.dumps(dict(MINIMAL, group="other", meter="M2")))
    assert sorted(group.load_all([a, b])) == ["2312000042G", "M2"]
    c.write_text(json.dumps(dict(MINIMAL, group="third", meter=GOOD["meter"])))
    with pytest.raises(group.GroupError) as e:
        group.load_all([a, b, c])
    assert e.value.field == "meter" and str(c) in str(e.value)
    c.write_text(json.dumps(dict(MINIMAL, group="other", meter="M3")))
    with pytest.raises(group.GroupError) as e:
        group.load_all([a, b, c])
    assert e.value.field == "group"


def test_supply_phases_follow_the_phase_rotation():
    g = group.validate(dict(MINIMAL, phases_order=[1, 2, 3]))
    assert group.supply_phases(g, {"phases": 3, "phase": 2}) == [2, 3, 1]
    g = group.validate(dict(MINIMAL, phases_order=[3, 2, 1]))
    assert group.supply_phases(g, {"phases": 3, "phase": 2}) == [2, 1, 3]
    assert group.supply_phases(g, {"phases": 1, "phase": 2}) == [2]
