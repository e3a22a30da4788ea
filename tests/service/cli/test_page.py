"""The page at `/`, in a real headless browser (Debian's chromium, driven by selenium
through chromium-driver; scripts/test.sh installs both) against a real `mplmm serve`
(issue 15, item 3): text and a generated WAV submitted, the label, scores and each
modality's reason rendered; a corrupt file's error shown, not swallowed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TinyBundle, fresh_packs, served, speech_wav

webdriver = pytest.importorskip("selenium.webdriver", reason="the dev extra installs selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def chrome() -> Any:
    """Headless chromium; fails (never skips) when the Debian packages are missing."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium and chromium-driver are not installed: scripts/test.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1300"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))


@pytest.fixture(scope="module")
def base(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("page") / "packs")
    with served(svc_bundle, packs, MPLMM_ASR="off") as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_predicts_and_shows_what_it_used_and_why(
    base: str, browser: Any, tmp_path: Path
) -> None:
    wav = tmp_path / "speech.wav"
    wav.write_bytes(speech_wav(2.0))
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    assert "sentiment and emotion" in browser.title
    wait.until(lambda d: len(Select(d.find_element(By.ID, "pack")).options) == 2)
    Select(browser.find_element(By.ID, "pack")).select_by_value("emotion")
    browser.find_element(By.ID, "text").send_keys("What a lovely day")
    browser.find_element(By.ID, "audio").send_keys(str(wav))
    browser.find_element(By.ID, "send").click()
    wait.until(ec.visibility_of_element_located((By.ID, "answer")))
    label = browser.find_element(By.ID, "label").text
    bars = browser.find_elements(By.CSS_SELECTOR, "#scores .bar")
    assert len(bars) == 7  # the emotion pack's labels
    assert label in {b.find_element(By.CSS_SELECTOR, "span").text for b in bars}
    assert "emotion 1.0.0" in browser.find_element(By.ID, "who").text
    modalities = {li.get_attribute("data-modality"): li.text
                  for li in browser.find_elements(By.CSS_SELECTOR, "#modalities li")}  # fmt: skip
    assert modalities == {
        "text": "text: used",
        "audio": "audio: used",
        "video": "video: not used (not_sent)",
    }
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_a_corrupt_file_shows_the_error(base: str, browser: Any, tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "pack")).options) == 2)
    browser.find_element(By.ID, "audio").send_keys(str(bad))
    browser.find_element(By.ID, "send").click()
    error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert error.text.startswith("422 invalid_media: audio:"), error.text
    assert not browser.find_element(By.ID, "answer").is_displayed()
    # Nothing to send at all: said on the page, nothing sent.
    browser.get(base + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "pack")).options) == 2)
    browser.find_element(By.ID, "send").click()
    error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "Send some text" in error.text
