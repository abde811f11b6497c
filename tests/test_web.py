"""The web page at / in headless Chromium (Debian's chromium + chromium-driver, via Selenium), on the
real service: upload, analysis, master, A/B at matched loudness, a preference that lands in the store.

The screenshot goes to ``$MIXSCALE_TEST_ARTIFACTS/web/`` (default ``test-artifacts/web/``)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("MIXSCALE_TEST_ARTIFACTS", "test-artifacts")) / "web"
PHONE = (390, 844)  # CSS pixels of a common phone


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        opts.add_argument(arg)
    opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": PHONE[0], "height": PHONE[1],
                                                                       "pixelRatio": 1.0}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def service(ray_session):
    from mixscale.testing.serve import ab_app_args, running_app

    args = ab_app_args()
    with running_app(args) as url:
        yield url, args["product"]["feedback_store"]


def wait_for(driver, script: str, timeout_s: float = 90.0, what: str = ""):
    """Wait until the JS expression ``script`` is truthy; returns its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
            lambda d: d.execute_script(f"return ({script});"))
    except TimeoutException:
        status = driver.execute_script("return [document.getElementById('status').textContent,"
                                       " document.getElementById('feedback-status').textContent]")
        raise AssertionError(f"timed out waiting for {what or script}; page status: {status!r}") from None


@pytest.mark.slow
def test_page_uploads_analyzes_masters_and_sends_a_preference(browser, service, tmp_path):
    import soundfile as sf

    from mixscale.product.feedback import open_store
    from mixscale.testing.signals import music_like

    url, store_path = service
    track = tmp_path / "song.wav"
    sf.write(track, music_like(3.0, 22050, seed=3)[0].T.numpy(), 22050, subtype="PCM_16")
    browser.get(f"{url}/")
    wait_for(browser, "document.body.dataset.ready === '1'", 30, "the page to load")

    # Upload -> analysis: loudness, true peak, genre probabilities and the EQ curve.
    browser.find_element("id", "file").send_keys(str(track))
    wait_for(browser, "document.body.dataset.analyzed === '1'", what="the analysis")
    lufs = browser.find_element("id", "lufs").text
    assert lufs.endswith("LUFS") and math.isfinite(float(lufs.split()[0]))
    assert browser.find_element("id", "tp").text.endswith("dBTP")
    genres = browser.find_elements("css selector", "#genres li")
    assert len(genres) >= 2 and all(li.text.strip().endswith("%") for li in genres)
    curve = browser.find_element("id", "eq-curve").get_attribute("d")
    assert curve.startswith("M") and curve.count("L") == 199  # 200 points from /v1/eq-curve

    # Master -> a playable audio element with the master.
    browser.execute_script("const s = document.getElementById('target'); s.value = '-16';"
                           "s.dispatchEvent(new Event('input'));")
    browser.find_element("id", "master-btn").click()
    wait_for(browser, "state.renders.length === 1", what="the first master")
    wait_for(browser, "document.getElementById('player').readyState >= 1", 30, "the audio metadata")
    audio = browser.execute_script(
        "const p = document.getElementById('player');"
        "return {src: p.src, duration: p.duration, error: p.error && p.error.code, wav: p.canPlayType('audio/wav'),"
        "        volume: p.volume, master: state.current.url};")
    assert audio["src"].startswith("blob:") and audio["src"] == audio["master"] and audio["error"] is None
    assert audio["wav"] in ("maybe", "probably") and audio["duration"] == pytest.approx(3.0, abs=0.05)
    dl = browser.find_element("id", "dl-master")
    assert dl.get_attribute("href").startswith("blob:") and dl.get_attribute("download") == "song.master.wav"
    assert browser.find_element("id", "dl-settings").get_attribute("download") == "song.master.settings.json"

    # A/B at matched loudness: the louder of original and master plays quieter by the difference.
    browser.find_element("id", "ab-original").click()
    ab = browser.execute_script("const p = document.getElementById('player');"
                                "return {src: p.src, volume: p.volume, original: state.originalUrl,"
                                "        lufs: state.analysis.loudness.integrated_lufs};")
    assert ab["src"] == ab["original"]
    expected = min(1.0, 10 ** (min(0.0, -(ab["lufs"] - (-16.0))) / 20))
    assert ab["volume"] == pytest.approx(expected, abs=1e-3)
    browser.find_element("id", "ab-master").click()
    assert browser.execute_script("return document.getElementById('player').src") == audio["master"]

    # A second master at another intensity, then a preference between the two.
    browser.execute_script("const s = document.getElementById('intensity'); s.value = '0.2';"
                           "s.dispatchEvent(new Event('input'));")
    browser.find_element("id", "master-btn").click()
    wait_for(browser, "state.renders.length === 2", what="the second master")
    renders = browser.execute_script("return state.renders.map(r => [r.requestId, r.version])")
    browser.find_element("id", "comment").send_keys("second one is less harsh")
    browser.find_element("id", "prefer-b").click()
    row_id = int(wait_for(browser, "document.body.dataset.feedbackId", 30, "the stored preference"))

    # Usable on a phone: a 390 px viewport and nothing wider than it.
    assert browser.execute_script("return window.innerWidth") == PHONE[0]
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "page.png"
    full = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": PHONE[0], "height": int(full["height"]),
                                                                   "deviceScaleFactor": 1, "mobile": True})
    browser.save_screenshot(str(shot))  # the whole page, phone-wide
    print(f"screenshot: {shot.resolve()}")
    assert shot.stat().st_size > 10_000

    row = open_store(store_path).get(row_id)
    assert row["kind"] == "preference" and row["request_ids"] == [renders[0][0], renders[1][0]]
    assert row["preferred_request_id"] == renders[1][0] and row["preferred_version"] == renders[1][1]
    assert row["comment"] == "second one is less harsh" and "Chrome" in row["user_agent"]
    assert row["client_id"]  # the page's cookie
