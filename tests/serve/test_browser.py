"""The web app in a real headless Chromium (selenium + /usr/bin/chromedriver) against a real uvicorn.

Each test saves a screenshot under its tmp dir; with GENZOO_SCREENSHOTS=1 the gallery, the playground
mid-stream and the run page are also written to docs/screenshots/ for the README:

    GENZOO_SCREENSHOTS=1 .venv/bin/pytest tests/serve/test_browser.py
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome") if Path(p).exists()), None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install genzoo[test])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

README_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Test instrumentation only: re-deliver the playground's stream one server-sent event per chunk,
# 150 ms apart, so a screenshot can catch it mid-stream (the page's own code is untouched).
SLOW_STREAM = """
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  const response = await realFetch(url, options);
  if (!String(url).includes('/playground/stream') || !response.ok) return response;
  const reader = response.body.getReader();
  const decoder = new TextDecoder(), encoder = new TextEncoder();
  let buffer = '';
  const body = new ReadableStream({async pull(controller) {
    for (;;) {
      const cut = buffer.indexOf('\\n\\n');
      if (cut >= 0) {
        const event = buffer.slice(0, cut + 2); buffer = buffer.slice(cut + 2);
        await new Promise(r => setTimeout(r, 150));
        controller.enqueue(encoder.encode(event)); return;
      }
      const {value, done} = await reader.read();
      if (done) { if (buffer) controller.enqueue(encoder.encode(buffer)); controller.close(); return; }
      buffer += decoder.decode(value, {stream: true});
    }
  }});
  return new Response(body, {status: response.status, headers: response.headers});
};
window.__lengths = [];
new MutationObserver(records => { for (const r of records) for (const n of r.addedNodes) window.__lengths.push(n.textContent.length); })
  .observe(document.getElementById('output'), {childList: true, characterData: true, subtree: true});
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, gpt_run):
    from test_web import build_site

    return build_site(tmp_path_factory.mktemp("browser-site"), gpt_run)


@pytest.fixture(scope="module")
def base(make_app, site):
    import uvicorn

    app = make_app(store=site["path"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    import tempfile

    from selenium.webdriver.chrome.service import Service

    # Chromium keeps its profile's sockets (SingletonSocket) in the profile and in TMPDIR: under a long
    # TMPDIR (CI's is 149 characters) their paths overflow a Unix socket's 108 bytes and Chromium exits
    # at start. A short folder for both.
    short = Path(tempfile.mkdtemp(prefix="gzc-", dir="/tmp" if os.access("/tmp", os.W_OK) else None))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                "--force-device-scale-factor=1", f"--user-data-dir={short / 'profile'}"):
        options.add_argument(arg)
    env = {**os.environ, "TMPDIR": str(short)}
    driver = webdriver.Chrome(service=Service(DRIVER, env=env), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def b(browser, base):
    """A browser with no cookies, at 1280 x 900."""
    browser.get(base + "/login")
    browser.delete_all_cookies()
    browser.set_window_size(1280, 900)
    return browser


def shot(driver, tmp_path: Path, name: str, readme: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    if readme and os.environ.get("GENZOO_SCREENSHOTS"):
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / readme)
    return path


def wait(driver, seconds: float = 20):
    return WebDriverWait(driver, seconds)


def sign_in(driver, base: str, key: str) -> None:
    """With the keyboard only: the key field, then Enter."""
    driver.get(base + "/login?next=/playground")
    field = driver.find_element(By.ID, "api_key")
    field.send_keys(key, Keys.ENTER)
    # the path, not url_contains("/playground"): the login page's own URL holds "next=/playground", so that
    # wait passed at once, and a test's next get() raced the sign-in's redirect; when the redirect landed
    # last, the test was on the playground, whose rating radios are hidden ("element not interactable")
    wait(driver).until(lambda d: urlsplit(d.current_url).path == "/playground")


def test_search_the_gallery(b, base, tmp_path):
    b.get(base + "/gallery")
    Select(b.find_element(By.ID, "mode")).select_by_visible_text("keyword")
    b.find_element(By.ID, "q").send_keys("zebra", Keys.ENTER)  # Enter in the search box submits the form
    wait(b).until(EC.text_to_be_present_in_element((By.ID, "results-summary"), "for “zebra”"))
    cards = b.find_elements(By.CSS_SELECTOR, "#results article")
    assert len(cards) == 12 and all("zebra" in c.text for c in cards)
    assert b.find_element(By.CSS_SELECTOR, "a[rel=next]").is_displayed()
    shot(b, tmp_path, "gallery-search")
    b.get(base + "/gallery")  # the README's gallery: newest first, the image and the sound among them
    shot(b, tmp_path, "gallery", "gallery.png")
    b.set_window_size(360, 740)  # usable on a phone: nothing wider than the screen
    b.get(base + "/gallery?q=zebra&mode=keyword")
    assert b.execute_script("return document.documentElement.scrollWidth") <= 360
    shot(b, tmp_path, "gallery-360px")


def test_generate_in_the_playground_and_watch_it_stream(b, base, site, tmp_path):
    b.set_window_size(1280, 1250)  # the form and the output in one screenshot
    sign_in(b, base, site["writer"])
    b.execute_script(SLOW_STREAM)
    prompt = b.find_element(By.ID, "prompt")
    prompt.send_keys("the quick brown")
    tokens = b.find_element(By.ID, "max_tokens")
    tokens.clear()
    tokens.send_keys("24")
    seed = b.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("7")
    b.find_element(By.ID, "generate").click()
    out = b.find_element(By.ID, "output")
    wait(b).until(lambda d: len(out.text) > 0)
    assert "Generating" in b.find_element(By.ID, "gen-status").text  # caught mid-stream
    shot(b, tmp_path, "playground-streaming", "playground.png")
    wait(b, 30).until(EC.text_to_be_present_in_element((By.ID, "gen-status"), "Done"))
    lengths = b.execute_script("return window.__lengths")
    assert len(lengths) >= 3 and lengths == sorted(lengths) and len(set(lengths)) >= 3, lengths  # it grew, piece by piece
    assert b.find_element(By.ID, "rate-form").is_displayed()
    shot(b, tmp_path, "playground-done")


def test_rate_a_result_and_find_the_rating_after_a_reload(b, base, site, tmp_path):
    sign_in(b, base, site["writer"])
    b.find_element(By.ID, "prompt").send_keys("the lazy")
    b.find_element(By.ID, "generate").click()
    wait(b, 30).until(EC.visibility_of_element_located((By.ID, "rate-form")))
    four = b.find_element(By.CSS_SELECTOR, "#rate-form input[value='4']")
    four.send_keys(Keys.SPACE)  # a radio button chosen with the keyboard
    assert four.is_selected()
    b.find_element(By.ID, "rate").send_keys(Keys.ENTER)
    wait(b).until(EC.url_contains("rated=1"))
    assert "your rating is saved" in b.find_element(By.CSS_SELECTOR, "[role=status]").text
    page = b.current_url.split("?")[0]
    b.get(page)
    b.refresh()
    assert b.find_element(By.CSS_SELECTOR, ".gen .rating").text == "4.0 / 5"
    assert "wendy" in b.find_element(By.TAG_NAME, "table").text
    shot(b, tmp_path, "rated")


def test_a_reader_is_refused_a_write_with_the_reason_in_words(b, base, site, tmp_path):
    sign_in(b, base, site["reader"])
    b.get(f"{base}/generations/{site['ids']['image']}")
    b.find_element(By.CSS_SELECTOR, "input[name=rating][value='5']").click()
    b.find_element(By.CSS_SELECTOR, "form[action$='/feedback'] button[type=submit]").click()
    alert = wait(b).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "Your rating was not saved" in alert.text and "role 'reader', which cannot give feedback" in alert.text
    shot(b, tmp_path, "reader-refused")


def test_run_page(b, base, tmp_path):
    b.get(base + "/runs/gpt")
    assert b.find_element(By.CSS_SELECTOR, "svg.chart polyline").is_displayed()
    assert b.execute_script("const i = document.querySelector('img[src$=\"loss.png\"]'); return i.complete && i.naturalWidth > 0")
    assert "2.25" in b.find_element(By.ID, "eval-title").find_element(By.XPATH, "..").text
    shot(b, tmp_path, "run", "run.png")
