"""End to end in headless Chromium: the real ``streamlit run app.py`` server, driven with Playwright.

Needs Debian's chromium at /usr/bin/chromium (never a downloaded browser). Without it the tests are
skipped, except on CI (CI=true), where they fail. Screenshots of every page (1280x800) go to
test-output/screenshots/ (and, with UPDATE_SCREENSHOTS=1, to assets/screenshots/ for the README).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA


CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "screenshots"
README_SHOTS = ROOT / "assets" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
SLOW = int(os.environ.get("BROWSER_TIMEOUT_MS", 180_000))         # ms: first LRP / activation cache on a busy 2-core machine

if not CHROMIUM.exists():
    message = ("Chromium is not installed at /usr/bin/chromium; install it with "
               "`apt-get install chromium chromium-driver` to run the browser tests.")
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
sync_api.expect.set_options(timeout=SLOW)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """``streamlit run app.py`` on a free port; MNIST offered when ../shared/data has it."""
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if (SHARED_DATA / "MNIST" / "raw").is_dir():
        env["UNLEARN_DATA_DIR"] = str(SHARED_DATA)
    log = (ROOT / "test-output")
    log.mkdir(exist_ok=True)
    out = open(log / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.fileWatcherType", "none",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    import urllib.request

    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early; see {log / 'streamlit.log'}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("streamlit did not answer within 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    out.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


OUTSIDE: list[str] = []          # requests to any host but the local server, over the module


def _note_outside(request) -> None:
    from urllib.parse import urlparse

    if not request.url.startswith(("data:", "blob:")) and urlparse(request.url).hostname not in ("127.0.0.1", "localhost"):
        OUTSIDE.append(request.url)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.on("request", _note_outside)
    pg = context.new_page()
    pg.set_default_timeout(SLOW)
    yield pg
    context.close()


def wait_idle(page, settle: float = 0.6) -> None:
    """Wait until the script (or fragment) run has finished and the page has settled."""
    time.sleep(settle)
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " const state = app && app.getAttribute('data-test-script-state');"
        " return state && state !== 'running' && state !== 'initial'; }", timeout=SLOW)
    time.sleep(0.3)


def open_page(page, url: str, path: str, title: str) -> None:
    page.goto(f"{url}/{path}" if "?" in path else f"{url}/{path}?model=digits/cnn")
    page.get_by_role("heading", name=title, exact=True).wait_for()
    wait_idle(page)
    assert page.get_by_text("Page not found").count() == 0, f"/{path} is not a page of the app"


def assert_no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").first.inner_text()


def metric(page, label: str) -> float:
    value = page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()
    return float(re.sub(r"[^0-9.]", "", value))


def choose(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def shoot(page, name: str) -> Path:
    """Screenshot the viewport (1280x800) into test-output/screenshots/; with
    UPDATE_SCREENSHOTS=1 also into assets/screenshots/ (the README's pictures)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.8)
    target = SHOTS / f"{name}.png"
    page.screenshot(path=str(target))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, README_SHOTS / target.name)
    return target


def shoot_below(page, name: str, target) -> Path | None:
    """A second screenshot, scrolled so that the element ``target`` (a locator) is at the top."""
    if target.count() == 0:
        return None
    target.first.evaluate("el => el.scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    page.mouse.move(5, 795)                       # no hover labels in the picture
    return shoot(page, name)


def set_strength(page, key: str) -> float:
    """Move the strength slider with the keyboard (Home = 0, End = 1, arrows = one step of 0.05),
    wait until the fragment has re-run for the new value, and return that value."""
    thumb = page.get_by_test_id("stSlider").filter(has_text="Strength").get_by_role("slider")
    thumb.focus()
    thumb.press(key)
    value = float(thumb.input_value())
    sync_api.expect(page.get_by_test_id("stSlider").filter(has_text="Strength").get_by_test_id(
        "stSliderThumbValue")).to_have_text(f"{value:.2f}")
    wait_idle(page, settle=0.8)
    return value


def metric_after(page, label: str, old: float | None = None, timeout: float = 60.0) -> float:
    """The metric's value once it differs from ``old`` (the fragment has redrawn), or after ``timeout``."""
    deadline = time.time() + timeout
    value = metric(page, label)
    while old is not None and value == old and time.time() < deadline:
        time.sleep(0.25)
        value = metric(page, label)
    return value


def test_unlearn_slider_end_to_end(server, page):
    """Pick a forget class, move the slider: the class's accuracy drops, the others stay."""
    open_page(page, server, "unlearn", "Unlearn a class")
    choose(page, "Forget class", "5")
    sync_api.expect(page.get_by_test_id("stMetric").filter(has_text="Forget (class 5)")).to_have_count(1)
    wait_idle(page)
    full = metric(page, "Forget (class")
    assert set_strength(page, "Home") == 0.0
    forget_before = metric_after(page, "Forget (class", full)
    retain_before = metric(page, "Retain (")
    assert forget_before > 80
    assert set_strength(page, "End") == 1.0
    forget_after = metric_after(page, "Forget (class", forget_before)
    retain_after = metric(page, "Retain (")
    assert forget_after < forget_before - 50, (forget_before, forget_after)
    assert abs(retain_after - retain_before) < 5, (retain_before, retain_after)
    for _ in range(10):                                 # halfway, step by step with the arrow keys
        value = set_strength(page, "ArrowLeft")
    assert value == 0.5
    middle = metric(page, "Forget (class")
    assert forget_after <= middle <= forget_before
    sidebar = page.get_by_test_id("stSidebar").inner_text()
    assert "Current model" in sidebar and "Device" in sidebar             # the shared sidebar survives reruns
    assert_no_exception(page)


def test_two_browser_sessions_unlearn_different_classes_at_once(server, browser):
    """Two users on one server move their sliders at the same time; each sees only its own class."""
    pages = []
    for cls in ("2", "7"):
        context = browser.new_context(viewport=VIEWPORT)
        pg = context.new_page()
        pg.set_default_timeout(SLOW)
        open_page(pg, server, "unlearn", "Unlearn a class")
        choose(pg, "Forget class", cls)
        sync_api.expect(pg.get_by_test_id("stMetric").filter(has_text=f"Forget (class {cls})")).to_have_count(1)
        pages.append((cls, pg))
    thumbs = [pg.get_by_test_id("stSlider").filter(has_text="Strength").get_by_role("slider") for _, pg in pages]
    for key in ("Home", "End"):
        values = {}
        for thumb in thumbs:                            # both keys pressed before either answer arrives
            thumb.focus()
            thumb.press(key)
        for (cls, pg), thumb in zip(pages, thumbs):
            target = "0.00" if key == "Home" else "1.00"
            sync_api.expect(pg.get_by_test_id("stSlider").filter(has_text="Strength").get_by_test_id(
                "stSliderThumbValue")).to_have_text(target)
            wait_idle(pg, settle=1.0)
            assert pg.get_by_test_id("stMetric").filter(has_text=f"Forget (class {cls})").count() == 1
            values[cls] = metric(pg, "Forget (class")
            assert_no_exception(pg)
        if key == "Home":
            before = values
        else:
            assert all(values[c] < before[c] for c in values), (before, values)
    for _, pg in pages:
        pg.context.close()


def test_every_page_renders_and_is_screenshotted(server, page):
    """Each page in turn through the sidebar links (one session), MNIST when its data is here."""
    page.goto(server)
    page.get_by_role("heading", name="Model", exact=True).wait_for()
    wait_idle(page)
    card = page.get_by_test_id("stVerticalBlock").filter(has_text="mnist / cnn").filter(
        has=page.get_by_role("button", name="Use this model")).last
    if (SHARED_DATA / "MNIST" / "raw").is_dir() and card.count() and \
            card.get_by_role("button", name="Use this model").is_enabled():     # MNIST is the default with its data
        card.get_by_role("button", name="Use this model").click()
        page.get_by_text("Now using mnist / cnn").wait_for()
        wait_idle(page)
    assert_no_exception(page)
    shoot(page, "1-model")
    shoot_below(page, "1-model-card", page.get_by_test_id("stPlotlyChart"))
    for link, title, name in [("Relevance", "Relevance", "2-relevance"), ("Neuron paths", "Neuron paths", "3-paths"),
                              ("Unlearn", "Unlearn a class", "4-unlearn"), ("Compare", "Compare methods", "5-compare")]:
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
        page.get_by_role("heading", name=title, exact=True).wait_for()
        wait_idle(page, settle=1.0)
        if name != "5-compare" or page.get_by_test_id("stPlotlyChart").count():
            sync_api.expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=SLOW)
            wait_idle(page)
        assert_no_exception(page)
        if name == "4-unlearn":
            set_strength(page, "Home")
            for _ in range(12):
                set_strength(page, "ArrowRight")          # 0.6: a partly forgotten class
        shoot(page, name)
        below = {"2-relevance": page.get_by_test_id("stPlotlyChart").nth(1),
                 "3-paths": page.get_by_test_id("stPlotlyChart").nth(1),
                 "4-unlearn": page.get_by_test_id("stMetric")}.get(name)
        if below is not None:
            shoot_below(page, f"{name}-charts", below)
        if name == "4-unlearn":                           # the erasure runs on demand
            page.get_by_role("button", name="Erase, relabel and repair").click()
            sync_api.expect(page.get_by_test_id("stDataFrame")).to_have_count(1, timeout=SLOW)
            wait_idle(page)
            assert_no_exception(page)
            shoot_below(page, "4-unlearn-erase", page.get_by_text("Inside the model: erase the class direction, relabel, repair"))
    assert len(list(SHOTS.glob("*.png"))) >= 6


def in_view(page, locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height + 1


@pytest.mark.parametrize("size", [(1280, 800), (1024, 768)])
def test_unlearn_fits_one_screen(server, browser, size):
    """Slider, forget/retain numbers, per-class bars and the example image with its predicted label are
    on the first screen, nothing wider than the window; no request leaves the machine."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    context.on("request", _note_outside)
    page = context.new_page()
    page.set_default_timeout(SLOW)
    open_page(page, server, "unlearn", "Unlearn a class")
    sync_api.expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    wait_idle(page)
    slider = page.get_by_test_id("stSlider").filter(has_text="Strength")
    metrics = page.get_by_test_id("stMetric")
    bars = page.locator(".js-plotly-plot").filter(has_text="Per-class accuracy")
    example = page.locator(".js-plotly-plot").filter(has_text="before: predicted")
    page.mouse.move(5, height - 5)
    shoot(page, f"4-unlearn-{width}x{height}")
    for what in (slider, metrics.filter(has_text="Forget (class"), metrics.filter(has_text="Retain"), bars, example):
        assert in_view(page, what.first, height), (size, what)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()
    assert not OUTSIDE, OUTSIDE


def test_url_round_trip(server, page):
    """A link restores model, class, method and strength; a change is written back into the URL."""
    page.goto(f"{server}/unlearn?model=digits/cnn&forget=7&method=gaussian&strength=0.9")
    page.get_by_role("heading", name="Unlearn a class", exact=True).wait_for()
    sync_api.expect(page.get_by_test_id("stMetric").filter(has_text="Forget (class 7)")).to_have_count(1)
    wait_idle(page)
    thumb = page.get_by_test_id("stSlider").filter(has_text="Strength").get_by_role("slider")
    assert float(thumb.input_value()) == 0.9
    assert page.get_by_role("radio", name="Gaussian noise").is_checked()
    set_strength(page, "ArrowRight")
    sync_api.expect(page).to_have_url(re.compile(r"strength=0\.95"))
    assert "forget=7" in page.url and "method=gaussian" in page.url and "model=digits%2Fcnn" in page.url.replace("/cnn", "%2Fcnn")
    assert_no_exception(page)


def test_model_link_opens_the_model_page_on_that_model(server, page):
    """A shared /model?model=... link opens the Model page (no "Page not found" over it) on that model,
    and choosing another model writes it into the URL."""
    wanted = "mnist/allcnn" if (SHARED_DATA / "MNIST" / "raw").is_dir() else "digits/cnn"
    page.goto(f"{server}/model?model={wanted}")
    page.get_by_role("heading", name="Model zoo", exact=True).wait_for()
    wait_idle(page)
    assert page.get_by_text("Page not found").count() == 0
    assert wanted.replace("/", " / ") in page.get_by_test_id("stSidebar").inner_text()
    other = "cifar10 / vgg11_slim" if wanted != "digits/cnn" else "mnist / cnn"
    card = page.get_by_test_id("stVerticalBlock").filter(has_text=other).filter(
        has=page.get_by_role("button", name="Use this model")).last
    if card.count() and card.get_by_role("button", name="Use this model").is_enabled():
        card.get_by_role("button", name="Use this model").click()
        page.get_by_text(f"Now using {other}").wait_for()
        wait_idle(page)
        sync_api.expect(page).to_have_url(re.compile("model=" + re.escape(other.replace(" / ", "%2F")) + "|model="
                                                     + re.escape(other.replace(" / ", "/"))))
    assert_no_exception(page)


def _digit_png() -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("L", (96, 96), 255)                 # dark ink on white paper, as a phone photo would be
    ImageDraw.Draw(image).line([(48, 16), (48, 80)], fill=0, width=12)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_own_image_loop(server, page):
    """The canvas renders; an uploaded digit gets its top-3 prediction and heatmap, before and after,
    following the slider. (Playwright's synthetic mouse strokes do not reach the Fabric.js canvas in
    headless Chromium, so the loop is driven by the upload.)"""
    open_page(page, server, "unlearn?model=digits/cnn&forget=1", "Unlearn a class")
    page.get_by_role("tab", name="Your own image").click()
    sync_api.expect(page.locator("canvas").last).to_be_visible()          # the drawing canvas renders
    page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(
        {"name": "one.png", "mimeType": "image/png", "buffer": _digit_png()})
    figure = page.locator(".js-plotly-plot").filter(has_text="Your image")
    figure.wait_for()
    wait_idle(page)
    text = page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile("^Before:")).last.inner_text()
    assert text.count("%") == 6, text                                  # top-3 before and after
    set_strength(page, "Home")
    wait_idle(page)
    lines = page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile("^Before:")).last.inner_text().split("\n")
    assert lines[0].replace("Before:", "").strip() == lines[1].replace("After:", "").strip()   # strength 0 = original
    shoot(page, "4-unlearn-own-image")
    assert_no_exception(page)
