"""End to end in a real browser: Debian's chromium, driven by Playwright, onboards a factory-new device.

Screenshots of each step go to test-output/portal-browser/ (git-ignored).
"""
import os
import shutil
import time

import pytest
from simctl import ROOT, Sim

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "test-output", "portal-browser")
NETWORKS = [{"ssid": "Home", "password": "secret123", "rssi": -55, "channel": 6},
            {"ssid": "Neighbour", "password": "other-pass1", "rssi": -80, "channel": 1}]
SCENARIO = {"wifi": {"networks": NETWORKS, "dhcp": True, "join_s": 1.0},
            "phases": [{"current_a": 10.0}, {"current_a": 6.0, "reversed": True}, {"current_a": 2.0}]}
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def wait_status_starting(page, text, timeout=20.0):
    # (Polled from here: the portal's CSP rightly forbids the eval behind wait_for_function.)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.inner_text("#status").startswith(text):
            return
        time.sleep(0.2)
    raise AssertionError("status never began with %r: %r" % (text, page.inner_text("#status")))


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: make test installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_installer_onboards_the_meter_from_a_phone_sized_browser(tmp_path, browser):
    os.makedirs(SHOTS, exist_ok=True)
    sim = Sim(tmp_path, SCENARIO).start()
    try:
        sim.wait_for("portal: serving")
        page = browser.new_page(viewport={"width": 390, "height": 844})     # a phone
        page.goto("http://%s/" % sim.http)
        assert page.locator("text=Home").first.is_visible()
        assert page.locator("text=Neighbour").first.is_visible()
        page.screenshot(path=os.path.join(SHOTS, "1-networks.png"), full_page=True)

        page.check("input[name=ssid][value=Home]")
        page.fill("#password", "wrong-password")
        page.click("button[type=submit]")
        page.wait_for_selector("text=did not accept the password", timeout=20000)
        page.screenshot(path=os.path.join(SHOTS, "2-wrong-password.png"), full_page=True)

        page.fill("#password", "secret123")
        page.click("button[type=submit]")
        wait_status_starting(page, "Connected")
        assert "Home" in page.inner_text("#status")
        page.wait_for_selector("text=L2: the clamp seems to be reversed", timeout=20000)
        page.screenshot(path=os.path.join(SHOTS, "3-connected.png"), full_page=True)
    finally:
        sim.close()
    assert os.path.exists(os.path.join(sim.state, "wifi.json"))
