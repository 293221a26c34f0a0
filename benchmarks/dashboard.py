"""How fast the dashboard answers, in Chromium, on MNIST cnn: the figures of BENCHMARKS.md's
"Dashboard response times".

Starts ``streamlit run app.py`` (MNIST from ``--data-dir``), drives Debian's Chromium headless with
Playwright (never a downloaded browser) and times, from the action to the page being idle again
(the script run finished and the new numbers drawn):

* cold start     - launching the server (the browser already open) to the Model page's zoo with its
  buttons live ("usable"), and to the whole page with its chart drawn;
* switch model   - "Use this model" on mnist / cnn, starting from digits / cnn;
* first visit    - opening /unlearn for a class never shown (the path found, the metrics drawn):
  right after the model's load, for a second class from the selectbox, and for a third by a link
  (``/unlearn?model=mnist/cnn&forget=7&strength=0.9``, a new session);
* widget steps   - one step of the strength slider, of K, of H (share mode), a change of target
  (from opening its list, and from clicking the option: the change itself);
  back to back by default, or ``--pause S`` seconds after each answer (a person reading it: the
  Unlearn page prepares the settings a step away meanwhile);
* erase          - the erase button ("Erase, relabel and repair"; "Erase the class direction and relabel"
  before the repair) until its table is drawn;
* requests       - any request to a host other than the local server (there must be none).

Usage: ``python -m benchmarks.dashboard [--data-dir ../shared/data] [--repeats 3] [--pause S] [--shots DIR]``
(``--shots``: also save screenshots of the Unlearn page at 1280x800 and 1024x768 there), or
``--compare OTHER_CHECKOUT [--rounds N]`` to time another checkout and this one alternately in one
run and print their ratio (this machine's speed drifts by 1.5-2x within an hour). With
``--first-visits N`` only the first two steps run, N times, each on a fresh server: the cold start
and the first visit right after the load, the figure with the widest spread (with ``--compare``,
the two checkouts alternate, each first in every other pair).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
IDLE = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
        " const s = a && a.getAttribute('data-test-script-state');"
        " return s && s !== 'running' && s !== 'initial'; }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str | None, port: int, root: Path = ROOT) -> tuple[subprocess.Popen, float]:
    """The server process and the seconds until its health check answered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if data_dir:
        env["UNLEARN_DATA_DIR"] = str(Path(data_dir).resolve())
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.fileWatcherType", "none",
                             "--browser.gatherUsageStats", "false"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return proc, time.perf_counter() - start
        except OSError:
            if proc.poll() is not None or time.perf_counter() - start > 120:
                raise RuntimeError("streamlit did not start")
            time.sleep(0.05)


def idle(page, settle: float = 0.15) -> None:
    """Until the script run (or fragment) has finished: polled every 20 ms."""
    time.sleep(settle)
    page.wait_for_function(IDLE, polling=20, timeout=300_000)


# Set window.__ran when the app's script state turns "running" (one observer per page, the flag reset
# before each timed action), so that a timed step waits for the run it caused, however late it starts.
WATCH_RUN = ("() => { window.__ran = false; if (window.__watching) return; window.__watching = true;"
             " const a = document.querySelector('[data-testid=\"stApp\"]');"
             " new MutationObserver(() => { if (a.getAttribute('data-test-script-state') === 'running')"
             " window.__ran = true; }).observe(a, {attributes: true, attributeFilter: ['data-test-script-state']}); }")


def timed(page, action) -> float:
    """Seconds from ``action`` to the end of the script run it caused (at most 10 s are waited for that
    run to begin; before, a step whose run began more than 0.15 s after the action, on a loaded
    machine, could be timed as the moment before it began)."""
    page.evaluate(WATCH_RUN)
    start = time.perf_counter()
    action()
    try:
        page.wait_for_function("() => window.__ran", polling=10, timeout=10_000)
    except Exception:                   # noqa: BLE001 - no run began: time to the page idle as it is
        pass
    idle(page, settle=0.0)
    return time.perf_counter() - start


def slider_step(page, label: str, key: str = "ArrowRight") -> float:
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    return timed(page, lambda: thumb.press(key))


def choose(page, label: str, option: str, picked: list[float] | None = None) -> float:
    """Seconds from opening the selectbox's list to the page idle again; ``picked`` gets the seconds
    from clicking the option (the change itself) to the same moment."""
    clicked = []

    def act():
        page.get_by_test_id("stSelectbox").filter(has_text=label).get_by_role("combobox").click()
        option_ = page.get_by_role("option", name=option, exact=True)
        option_.wait_for()
        clicked.append(time.perf_counter())
        option_.click()
    seconds = timed(page, act)
    if picked is not None:
        picked.append(time.perf_counter() - clicked[0])
    return seconds


def open_settings(page) -> None:
    page.get_by_text("Path settings (shared").click()
    time.sleep(0.4)


def unlearn_ready(page) -> None:
    page.get_by_role("heading", name="Unlearn a class", exact=True).wait_for(timeout=300_000)
    page.get_by_test_id("stMetric").first.wait_for(timeout=300_000)
    page.get_by_test_id("stPlotlyChart").first.wait_for(timeout=300_000)
    idle(page)


def cold_start(page, url: str, t0: float, out: dict) -> None:
    """The Model page of a server launched at ``t0``: the seconds until its zoo is usable and until
    its chart is drawn, into ``out``."""
    page.goto(f"{url}/model")
    page.get_by_role("heading", name="Model zoo").wait_for()
    page.get_by_role("button", name="Use this model").first.wait_for()
    out["cold_start_usable_s"] = time.perf_counter() - t0       # the zoo drawn, its buttons live
    page.get_by_test_id("stPlotlyChart").first.wait_for()
    idle(page)
    out["cold_start_s"] = time.perf_counter() - t0              # the whole page, its chart drawn


def first_visit_after_load(page, url: str, out: dict) -> None:
    """Straight after :func:`cold_start`: the seconds until ``/unlearn?forget=3`` has its answer, into ``out``."""
    page.goto(f"{url}/unlearn?forget=3")
    start = time.perf_counter()
    unlearn_ready(page)
    out["first_visit_after_load_s"] = time.perf_counter() - start


class Figures(dict):
    """The figures, printed as they come (a long run under load still tells what it measured)."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if isinstance(value, float):
            print(f"{key}: {value:.2f}", flush=True)


def run(data_dir: str | None, repeats: int, shots: Path | None, root: Path = ROOT, pause: float = 0.0) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    outside: list[str] = []
    out = Figures()
    with sync_playwright() as p:
        # The browser first (a visitor's is already open), then the server: the cold start is the app's.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in
                   ("127.0.0.1", "localhost", None) and not r.url.startswith("data:") else None)
        page = context.new_page()
        page.set_default_timeout(300_000)
        proc, health = start_server(data_dir, port, root)
        t0 = time.perf_counter() - health
        try:
            cold_start(page, url, t0, out)
            out["server_up_s"] = health
            first_visit_after_load(page, url, out)
            out["first_visit_other_class_s"] = choose(page, "Forget class", "8")

            def step(label: str, key: str = "ArrowRight") -> float:
                time.sleep(pause)
                return slider_step(page, label, key)
            out["strength_step_s"] = statistics.median(step("Strength", "ArrowLeft") for _ in range(repeats))
            open_settings(page)
            out["k_step_s"] = statistics.median(step("K: top units") for _ in range(repeats))
            choose(page, "H: units to perturb", "share of layer")
            out["h_step_s"] = statistics.median(step("H: share of each layer") for _ in range(repeats))
            time.sleep(pause)
            picked: list[float] = []
            out["target_change_s"] = choose(page, "Weights to perturb", "outgoing weight to the class", picked)
            out["target_change_from_pick_s"] = picked[0]
            start = time.perf_counter()
            page.goto(f"{url}/unlearn?model=mnist/cnn&forget=7&strength=0.9")
            unlearn_ready(page)
            out["first_visit_by_link_s"] = time.perf_counter() - start
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                for w, h in ((1280, 800), (1024, 768)):
                    page.set_viewport_size({"width": w, "height": h})
                    page.evaluate("document.querySelector('[data-testid=\\'stMain\\']').scrollTo(0, 0)")
                    page.mouse.move(w - 5, h - 5)
                    time.sleep(1.5)
                    page.screenshot(path=str(shots / f"unlearn-{w}x{h}.png"))

            button = page.get_by_role("button", name=re.compile(r"^Erase(, relabel| the class direction)"))
            start = time.perf_counter()
            button.click()
            page.get_by_test_id("stDataFrame").wait_for()
            idle(page)
            out["erase_and_relabel_s"] = time.perf_counter() - start
            fresh = browser.new_context(viewport={"width": 1280, "height": 800})   # a session still on digits
            pg = fresh.new_page()
            pg.set_default_timeout(300_000)
            pg.goto(f"{url}/model?model=digits/cnn")
            pg.get_by_role("heading", name="Model zoo").wait_for()
            idle(pg)
            if pg.get_by_text("Page not found").count():
                out["switch_to_mnist_cnn_s"] = "failed: /model shows Page not found"
            else:
                start = time.perf_counter()
                card = pg.get_by_test_id("stVerticalBlock").filter(has_text="mnist / cnn").filter(
                    has=pg.get_by_role("button", name="Use this model"))
                card.last.get_by_role("button", name="Use this model").click(timeout=60_000)
                pg.get_by_text("Now using mnist / cnn").wait_for()
                idle(pg)
                out["switch_to_mnist_cnn_s"] = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            browser.close()
    out["outside_requests"] = sorted(set(outside))
    return out


def first_visits(data_dir: str | None, times: int, roots: list[Path]) -> dict[str, list[dict]]:
    """The cold start and the first visit right after the load, ``times`` times per checkout, each on
    a fresh server; the checkouts alternate, the order reversed in every other pair."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[dict]] = {str(root): [] for root in roots}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i in range(times):
            for root in roots if i % 2 == 0 else roots[::-1]:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.set_default_timeout(300_000)
                port = free_port()
                proc, health = start_server(data_dir, port, root)
                t0 = time.perf_counter() - health
                row: dict[str, float] = {}
                try:
                    cold_start(page, f"http://127.0.0.1:{port}", t0, row)
                    first_visit_after_load(page, f"http://127.0.0.1:{port}", row)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                    context.close()
                out[str(root)].append(row)
                print(root.name or str(root), " ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shots", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None,
                        help="another checkout of the app (e.g. a git worktree of an older commit): run it and this "
                             "one alternately, --rounds times, and print both with their ratio (one run, one machine)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait after each answer before the next widget step (default: none)")
    parser.add_argument("--first-visits", type=int, default=0, metavar="N",
                        help="only the cold start and the first visit right after the load, N times on fresh servers")
    args = parser.parse_args()
    if args.first_visits:
        roots = ([args.compare.resolve()] if args.compare else []) + [ROOT]
        runs = first_visits(args.data_dir, args.first_visits, roots)
        for root, rows in runs.items():
            visits = [r["first_visit_after_load_s"] for r in rows]
            print(f"{root}: first visit after the load {', '.join(f'{v:.2f}' for v in visits)} s; median "
                  f"{statistics.median(visits):.2f}, worst {max(visits):.2f}; a usable zoo at worst "
                  f"{max(r['cold_start_usable_s'] for r in rows):.2f} s")
        if args.compare:
            a, b = (statistics.median(r["first_visit_after_load_s"] for r in rows) for rows in runs.values())
            print(f"this / other: {b / a:.2f}")
        return
    if args.compare is None:
        result = run(args.data_dir, args.repeats, args.shots, pause=args.pause)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
        return
    runs: dict[str, list[dict]] = {"other": [], "this": []}
    for _ in range(args.rounds):
        for name, root in (("other", args.compare.resolve()), ("this", ROOT)):
            print(f"--- {name}: {root}", flush=True)
            runs[name].append(run(args.data_dir, args.repeats, None, root, args.pause))
    print(f"| what | {args.compare} | this tree | this / other |\n|---|---|---|---|")
    for key, value in runs["this"][0].items():
        if not isinstance(value, float):
            continue
        a = [r[key] for r in runs["other"] if isinstance(r.get(key), float)]
        b = [r[key] for r in runs["this"] if isinstance(r.get(key), float)]
        ma, mb = (statistics.median(a) if a else None), statistics.median(b)
        ratio = f"{mb / ma:.2f}" if ma else "-"
        print(f"| {key} | {f'{ma:.2f}' if ma is not None else runs['other'][0].get(key, '-')} | {mb:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
