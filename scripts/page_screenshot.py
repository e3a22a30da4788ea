"""The README's screenshot of the page: `mplmm serve` on the default bundle, the page in
headless chromium, a RAVDESS test clip and three espeak-ng sentences sent with a timeline.

    .venv/bin/python scripts/page_screenshot.py [--png docs/page.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The repository first, so that `service` is the package and not bench/service.py.
sys.path[:0] = [
    str(REPO),
    *(str(REPO / d) for d in ("tests/service", "tests/service/cli", "bench")),
]
from harness import Server  # noqa: E402
from spoken import SR, spoken, wav_bytes  # noqa: E402
from test_page import chrome  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "page.png")
    args = parser.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    gap = np.zeros(SR, np.float32)
    said = ("I really love this wonderful day, everything is great.",
            "This is terrible, I hate it and I am very angry.",
            "Thank you so much, this is the best gift ever.")  # fmt: skip
    speech = np.concatenate([np.concatenate([spoken(s, pad_s=0.0), gap]) for s in said])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "talk.wav").write_bytes(wav_bytes(speech))
        shutil.copytree(REPO / "bundle" / "packs", tmp / "packs")
        server = Server(REPO / "bundle", tmp / "packs")
        server.wait_ready()
        browser = chrome()
        try:
            browser.set_window_size(1000, 1500)
            browser.get(server.base + "/")
            wait = WebDriverWait(browser, 120)
            wait.until(lambda d: len(Select(d.find_element(By.ID, "pack")).options) == 2)
            browser.find_element(By.ID, "audio").send_keys(str(tmp / "talk.wav"))
            browser.find_element(By.ID, "timeline").click()
            browser.find_element(By.ID, "send").click()
            wait.until(ec.visibility_of_element_located((By.ID, "timeline-view")))
            for _ in range(2):  # the page reflows once the window is taller
                height = browser.execute_script("return document.body.scrollHeight")
                browser.set_window_size(1000, height + 120)
            browser.save_screenshot(str(args.png))
        finally:
            browser.quit()
            server.stop()
    print(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
