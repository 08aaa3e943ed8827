"""The ESP32 hardware layer cannot run here, so it is checked by reading it: same interface as its
simulated twin, and the only firmware module touching `machine` / `network` (docs/design.md)."""
import ast
import glob
import os

from simctl import ROOT

CONTRACT_CLASSES = ("Hal", "Adc", "WifiStation", "AccessPoint", "Lan")


def parse(path):
    with open(os.path.join(ROOT, path)) as f:
        return ast.parse(f.read(), path)


def public_methods(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in CONTRACT_CLASSES:
            out[node.name] = sorted(f.name for f in node.body
                                    if isinstance(f, ast.FunctionDef) and not f.name.startswith("_"))
    return out


def instance_attributes(tree, cls):
    """Names assigned as self.<name> in cls.__init__, public only."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == "__init__":
                    return sorted({t.attr for n in ast.walk(f) if isinstance(n, ast.Assign) for t in n.targets
                                   if isinstance(t, ast.Attribute) and not t.attr.startswith("_")})
    return []


def imported_modules(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_esp32_layer_has_the_interface_of_the_simulated_one():
    esp32 = parse("firmware/hal_esp32.py")
    sim = parse("tools/simhw/hal_sim.py")
    assert public_methods(esp32) == public_methods(sim)
    assert sorted(public_methods(esp32)) == sorted(CONTRACT_CLASSES)
    simulator_only = {"scenario"}
    for cls in ("Hal", "Adc"):
        missing = set(instance_attributes(sim, cls)) - simulator_only - set(instance_attributes(esp32, cls))
        assert not missing, (cls, missing)
    assert {"flash_dir", "wifi", "ap", "lan"} <= set(instance_attributes(esp32, "Hal"))
    assert {"channels", "read_us"} <= set(instance_attributes(esp32, "Adc"))


def class_constants(tree, cls):
    """{name: value} of the constants assigned in cls's body."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {t.id: n.value.value for n in node.body if isinstance(n, ast.Assign)
                    and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}
    return {}


def test_only_the_simulator_may_look_names_up_with_the_blocking_system_resolver():
    # firmware/resolver.py: without a DNS server from DHCP the ESP32 must not call getaddrinfo.
    esp32 = class_constants(parse("firmware/hal_esp32.py"), "Hal")
    sim = class_constants(parse("tools/simhw/hal_sim.py"), "Hal")
    assert esp32["system_resolver"] is False and sim["system_resolver"] is True
    assert esp32.keys() == sim.keys()


# The boot loader runs before any hardware layer exists; all it takes from `machine` is reset(), so that a
# firmware on trial that crashes at import is counted (and, for an image, rolled back by the chip).
HARDWARE_IMPORTS = {"firmware/hal_esp32.py": {"machine", "network"}, "firmware/main.py": {"machine"}}


def test_only_the_esp32_layer_imports_machine_or_network():
    for path in sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py"))):
        rel = os.path.relpath(path, ROOT)
        hw = imported_modules(parse(rel)) & {"machine", "network"}
        assert hw == HARDWARE_IMPORTS.get(rel, set()), rel


def test_nothing_on_the_host_imports_the_esp32_layer():
    paths = glob.glob(os.path.join(ROOT, "tools", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "tests", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "firmware", "*.py"))
    for path in paths:
        rel = os.path.relpath(path, ROOT)
        assert "hal_esp32" not in imported_modules(parse(rel)), rel
