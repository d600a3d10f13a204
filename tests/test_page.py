"""The status page in a real browser: Debian's headless Chromium driven by Selenium through Debian's chromedriver.
The page must show the figures the API serves and log no console error. Skipped where Chromium is not installed
(`apt-get install chromium chromium-driver`)."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from ntg_edge.appliance.server import create_app, flow_dict

from test_server import make_appliance, serving

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("headless Chromium not found: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _wait_for(driver, element_id: str, want, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got = _text(driver, element_id)
        if want(got):
            return got
        assert time.monotonic() < deadline, f"#{element_id} shows {got!r}"
        time.sleep(0.2)


def test_page_renders_the_api_figures(browser, tiny_bundles, real_files, demo_split, tmp_path):
    app_ = make_appliance(tiny_bundles["int8"], tmp_path / "clf", real_files["train"])
    with serving(create_app(app_)) as (url, _):
        # activity for the page to show: generated and classified flows, and one augment
        httpx.post(f"{url}/v1/generate", json={"n": 40, "mix": {"dns": 1, "http": 1}}, timeout=30)
        httpx.post(f"{url}/v1/classify", json={"flows": [flow_dict(f) for f in demo_split[1][:25]]}, timeout=30)
        r = httpx.post(f"{url}/v1/augment", json={"flows": [flow_dict(f) for f in demo_split[0]],
                                                  "target_per_class": 60}, timeout=30)
        assert r.status_code == 202
        while (aug := httpx.get(f"{url}/v1/augment").json())["state"] == "running":
            time.sleep(0.2)
        browser.get(url + "/")
        _wait_for(browser, "status", lambda t: t == "ready")
        bundle = httpx.get(f"{url}/v1/bundle").json()
        clf = httpx.get(f"{url}/v1/classifier").json()
        assert _text(browser, "classes") == ", ".join(bundle["classes"])
        assert _text(browser, "bundle-path") == bundle["path"]
        assert _wait_for(browser, "gen-total", lambda t: t != "-") == "40"
        assert _wait_for(browser, "cls-total", lambda t: t != "-") == "25"
        assert float(_text(browser, "gen-rate")) > 0  # 40 flows within the last 10 s
        assert _text(browser, "clf-version").startswith(f"v{clf['version']} ")
        assert _text(browser, "clf-f1") == f"{clf['macro_f1']:.3f}"
        assert _text(browser, "aug-before") == f"{aug['before_f1']:.3f}"
        assert _text(browser, "aug-after") == f"{aug['after_f1']:.3f}"
        assert _text(browser, "aug-state").startswith("done")
        assert _text(browser, "live-summary").startswith("off")
        # a later change reaches the page through its refresh
        httpx.post(f"{url}/v1/generate", json={"n": 5}, timeout=30)
        _wait_for(browser, "gen-total", lambda t: t == "45")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors


def test_page_shows_live_predictions(browser, tiny_bundles, real_files, tmp_path):
    """Live capture on loopback (filtered to one port of a server the test runs): the page's table lists the flows."""
    import http.server
    import os
    import threading
    import urllib.request

    if os.geteuid() != 0:
        pytest.skip("live capture needs root (or CAP_NET_RAW)")
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port = web.server_address[1]
    threading.Thread(target=web.serve_forever, daemon=True).start()
    app_ = make_appliance(tiny_bundles["int8"], tmp_path / "clf", real_files["train"],
                          capture={"interface": "lo", "bpf": f"tcp port {port}", "classify_at": 4})
    try:
        with serving(create_app(app_)) as (url, _):
            time.sleep(0.5)
            for _ in range(3):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            browser.get(url + "/")
            summary = _wait_for(browser, "live-summary", lambda t: t.startswith("3 flows seen"))
            live = httpx.get(f"{url}/v1/live").json()
            rows = browser.find_elements("css selector", "#live-recent tr")
            assert len(rows) == 3
            for row, p in zip(rows, live["recent"]):
                cells = [td.text for td in row.find_elements("tag name", "td")]
                assert cells[1] == f"127.0.0.1:{p['src_port']} → 127.0.0.1:{port} tcp"
                assert cells[3] == p["label"] and cells[4] == f"{p['probability']:.2f}"
            assert all(f"{c} {n}" in summary for c, n in live["counts"].items())
            assert _text(browser, "live-iface") == "on lo"
            errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
    finally:
        web.shutdown()
