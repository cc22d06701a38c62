"""Instant browsing (issue 16): input event -> next painted frame, page render (recolour in the page) vs server
render (a new figure per change, mounted by gr.Plot), side by side in one run, in Debian's headless chromium.

    .venv/bin/python bench/bench_page.py [--points 2048 20000 100000] [--panels 1 3] [--repeats 5]
                                         [--heap-changes 200] [--opens 5]

Both apps run in this process on the same Explorer (one cache of models and maps: the server side is the same),
each in its own chromium page; every change alternates between the two pages. A change's time runs from the
input event (the option's click, the arrow key, the first keystroke in a number box) to the second animation
frame after the plot's data changed, the usual double-requestAnimationFrame end: the probe looks for the change in
each frame's callbacks, and the next frame begins once the frame it first saw the change in has been painted
(both renders' WebGL draws of the new data come before or in that frame; in the page render the change is often
painted a frame sooner still, since Gradio runs page.js's handler in a frame's callbacks after the probe has
looked: BENCHMARKS.md, "The end of a change"). Runs before commit 22f7532 waited one frame more; the "one frame later" column
gives that end too, for comparison with them. "requests" counts the events the page sent to the server's queue
per change. The heap rows: the page's JS heap (after a forced garbage collection) after 10 and after
--heap-changes head and layer changes in page render. The open rows: page load -> the first painted frame
with the plot's data, a fresh page each time, alternating. BENCH_PAGE_TRACE=1 prints where each change's
time went: the input event, page.js's marks (recolour entered, done, plot updated), the frame that saw the
change, the next frame (the end) and the one after, and the page's WebGL draw calls since the input.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import benchutil as bu  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)

PLOT = "#pcd-plot .js-plotly-plot"
RENDERS = ("server", "page")

# Installed in every page: remembers the time of the first input event after arm(), and tells when the plot's
# data changed (a new plot element or a new colour array): [ms to the next frame after the one that saw the
# change, which has then been painted; ms to the frame after that (the end runs before 22f7532 used)].
PROBE = """
window.__bench = {t0: null, armed: false, ref: null, el: null};
for (const type of ['pointerdown', 'keydown', 'input', 'click']) {
  document.addEventListener(type, () => { const b = window.__bench; if (b.armed && b.t0 === null) b.t0 = performance.now(); }, true);
}
window.__benchArm = () => {
  const b = window.__bench, el = document.querySelector('%s');
  b.t0 = null; b.armed = true; b.el = el; b.ref = el && el._fullData && el._fullData[0] ? el._fullData[0].marker.color : null;
};
window.__benchWait = (timeoutMs) => new Promise((resolve) => {
  const b = window.__bench, start = performance.now();
  function changed() {
    const el = document.querySelector('%s');
    return el && el._fullData && el._fullData[0] && (el !== b.el || el._fullData[0].marker.color !== b.ref);
  }
  function tick() {
    if (changed()) {
      b.tDetect = performance.now();
      requestAnimationFrame(() => {
        const painted = b.tPainted = performance.now();
        requestAnimationFrame(() => {
          b.armed = false; b.tLater = performance.now();
          resolve(b.t0 === null ? null : [painted - b.t0, b.tLater - b.t0]);
        });
      });
    } else if (performance.now() - start > timeoutMs) { b.armed = false; resolve(-1); }
    else requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
});
""" % (PLOT, PLOT)

# BENCH_PAGE_TRACE only: the time of every WebGL draw call while a change is timed (in both renders, plotly's and
# the points layer's draws of the new data come before or in the frame that sees the change)
TRACE_DRAWS = """
window.__bench.draws = [];
for (const C of [window.WebGLRenderingContext, window.WebGL2RenderingContext]) {
  for (const f of ['drawArrays', 'drawElements']) {
    const draw = C.prototype[f];
    C.prototype[f] = function () { const b = window.__bench; if (b.armed) b.draws.push(performance.now()); return draw.apply(this, arguments); };
  }
}
"""

FIRST_PLOT = """() => new Promise((resolve) => {
  function tick() {
    const el = document.querySelector('%s');
    if (el && el._fullData && el._fullData[0]) {
      requestAnimationFrame(() => { const painted = performance.now(); requestAnimationFrame(() => resolve([painted, performance.now()])); });
    }
    else requestAnimationFrame(tick);
  }
  tick();
})""" % PLOT


class Page:
    """One chromium page on one app, with the probe and a count of queue requests."""

    def __init__(self, browser, url: str, render: str):
        self.render, self.url = render, url
        self.page = browser.new_page(viewport={"width": 1500, "height": 1100})
        self.page.set_default_timeout(180_000)
        self.joins = 0
        self.page.on("request", self._count)
        self.page.add_init_script(PROBE)
        if os.environ.get("BENCH_PAGE_TRACE"):
            self.page.add_init_script(TRACE_DRAWS)
        self.page.goto(url)
        self.page.wait_for_selector(PLOT)
        self.settle()

    def _count(self, r):
        if "/queue/join" in r.url or "/run/" in r.url:
            self.joins += 1

    def settle(self, ms: int = 800):
        self.page.wait_for_function("() => !document.querySelector('#pcd-status .pending, #pcd-plot .pending')")
        self.page.wait_for_timeout(ms)

    def status(self) -> str:
        return self.page.locator("#pcd-status").inner_text()

    def server_event(self, action, expect: str | None = None):
        """Run a change that goes to the server in both renders (a new cloud, a comparison, the mode)."""
        before = self.status()
        action(self.page)
        self.page.wait_for_function("b => document.querySelector('#pcd-status').innerText !== b", arg=before)
        if expect:
            self.page.wait_for_function("t => document.querySelector('#pcd-status').innerText.includes(t)", arg=expect)
        self.settle(1500)

    def timed(self, prepare, act, timeout_ms: int = 120_000) -> tuple[float, float, int]:
        """(ms from the input event to the painted frame with new data, ms to one frame later, queue requests
        sent) of one change."""
        self.page.bring_to_front()
        if prepare:
            prepare(self.page)
        n = self.joins
        self.page.evaluate("() => window.__benchArm()")
        act(self.page)
        got = self.page.evaluate("t => window.__benchWait(t)", timeout_ms)
        ms, later = got if isinstance(got, list) else (float("nan"), float("nan"))   # null: no input; -1: timeout
        if os.environ.get("BENCH_PAGE_TRACE"):   # where a change's time went: input, page.js marks, detection
            print("    trace", self.render, self.page.evaluate(
                "() => { const b = window.__bench, m = (window.pcdviz.stats || {}).marks || [];"
                " const r = x => x === null || x === undefined ? null : Math.round(x - b.t0);"
                " return {marks: [b.t0, ...m].map(r), saw: r(b.tDetect), end: r(b.tPainted), later: r(b.tLater),"
                "         draws: [...new Set((b.draws || []).map(r))]}; }"), flush=True)
            self.page.evaluate("() => { window.__bench.draws = []; }")
        self.settle(300)
        return float(ms), float(later), self.joins - n

    def heap_mb(self) -> float:
        cdp = self.page.context.new_cdp_session(self.page)
        cdp.send("HeapProfiler.collectGarbage")
        used = cdp.send("Runtime.getHeapUsage")["usedSize"]
        cdp.detach()
        return used / 1024**2


def choose_head(name):
    return lambda p: p.locator("#pcd-head").get_by_role("radio", name=name, exact=True).click()


def press_layer(key):
    def act(p):
        rng = p.locator("#pcd-layer input[type=range]")
        rng.focus()
        rng.press(key)
    return act


def type_box(elem: str, value):
    def act(p):
        box = p.locator(f"#{elem} input[type=number]" if elem != "pcd-query" else "#pcd-query input")
        box.fill(str(value))
        box.press("Enter")
    return act


def load_cloud(n_points: int):
    def action(p):
        p.get_by_role("tab", name="Shape").click()
        box = p.get_by_role("spinbutton", name="Points", exact=True)
        box.fill(str(n_points))
        box.press("Tab")
        p.get_by_role("button", name="Show shape").click()
    return action


def tick_compare(name):
    return lambda p: p.locator("#pcd-compare label", has_text=name).click()


def choose_mode(label):
    return lambda p: p.locator("#pcd-mode label", has_text=label).click()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, nargs="+", default=[2048, 20000, 100000])
    ap.add_argument("--panels", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--repeats", type=int, default=5, help="changes of each kind per render and configuration")
    ap.add_argument("--heap-changes", type=int, default=200)
    ap.add_argument("--opens", type=int, default=5)
    ap.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    args = ap.parse_args(argv)
    print(bu.header("bench_page"))

    from playwright.sync_api import sync_playwright

    from pcdviz.app import build_app, launch
    from pcdviz.explorer import Explorer
    from pcdviz.headless import CHROMIUM, CHROMIUM_ARGS, free_port

    ex = Explorer(args.checkpoints)
    names = ex.usable_checkpoints()
    main_ck = ex.default_checkpoint()
    others = [n for n in names if n != main_ck]
    apps, urls = [], {}
    for render in RENDERS:
        demo = build_app(ex, render=render)
        port = free_port()
        launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
        apps.append(demo)
        urls[render] = f"http://127.0.0.1:{port}/"

    rows, heap_rows, open_rows = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + ["--enable-precise-memory-info"],
                                     headless=True)
        try:
            # ---- page open -> first plot (chair, 2,048 points), alternating
            opens = {r: [] for r in RENDERS}
            for i in range(args.opens):
                for render in RENDERS:
                    pg = browser.new_page(viewport={"width": 1500, "height": 1100})
                    pg.goto(urls[render])
                    opens[render].append(pg.evaluate(FIRST_PLOT))
                    pg.close()
            for render in RENDERS:
                if opens[render]:
                    painted = [o[0] for o in opens[render]]
                    open_rows.append([render, f"{statistics.median(painted):.0f}", f"{min(painted):.0f}-{max(painted):.0f}",
                                      f"{statistics.median(o[1] for o in opens[render]):.0f}"])

            # ---- changes: head, layer, threshold, query at each size, 1 and 3 panels
            for n_points in args.points:
                for n_panels in args.panels:
                    pages = {r: Page(browser, urls[r], r) for r in RENDERS}
                    for pg in pages.values():
                        pg.page.bring_to_front()
                        if n_points != 2048:
                            pg.server_event(load_cloud(n_points), "CLS")
                        for name in others[:n_panels - 1]:
                            pg.server_event(tick_compare(name), "checkpoints")
                    reps = args.repeats if n_points < 100_000 else max(2, args.repeats // 2)
                    kinds = {
                        "head": [(None, choose_head(h)) for h in ("1", "4", "2", "5", "0", "3")],
                        "layer": [(None, press_layer(k)) for k in ("ArrowLeft", "ArrowRight")],
                        "threshold": [(None, type_box("pcd-keep", k)) for k in (0.5, 0.7)],
                    }
                    res = {(k, r): [] for k in list(kinds) + ["query"] for r in RENDERS}   # (ms, later, sent)
                    for kind, steps in kinds.items():
                        for i in range(reps):
                            for render in (RENDERS if i % 2 == 0 else RENDERS[::-1]):
                                prep, act = steps[i % len(steps)]
                                res[(kind, render)].append(pages[render].timed(prep, act))
                    for pg in pages.values():
                        pg.page.bring_to_front()
                        pg.server_event(type_box("pcd-keep", 1.0))
                        pg.server_event(choose_mode("query patch"), "patch")
                    for i in range(reps):
                        for render in (RENDERS if i % 2 == 0 else RENDERS[::-1]):
                            res[("query", render)].append(pages[render].timed(None, type_box("pcd-query", (5 + 7 * i) % 32)))
                    for kind in list(kinds) + ["query"]:
                        med = {(r, j): statistics.median(t[j] for t in res[(kind, r)]) for r in RENDERS for j in range(3)}
                        old, new = med[("server", 0)], med[("page", 0)]
                        page_ms = [t[0] for t in res[(kind, "page")]]
                        rows.append([kind, f"{n_points:,}", n_panels, f"{old:.0f}", f"{new:.0f}", f"{old / new:.1f}x",
                                     f"{med[('server', 1)] / med[('page', 1)]:.1f}x",
                                     f"{med[('server', 2)]:.0f} / {med[('page', 2)]:.0f}",
                                     f"{min(page_ms):.0f}-{max(page_ms):.0f}"])
                        print("  ", rows[-1], flush=True)
                    for pg in pages.values():
                        pg.page.close()

            # ---- the page's JS heap over many changes (page render, 2,048 points)
            if args.heap_changes:
                pg = Page(browser, urls["page"], "page")
                marks = {}
                steps = [(None, choose_head(h)) for h in ("1", "4", "mean")] + \
                        [(None, press_layer(k)) for k in ("ArrowLeft", "ArrowRight")]
                for i in range(1, args.heap_changes + 1):
                    prep, act = steps[i % len(steps)]
                    pg.timed(prep, act)
                    if i in (10, args.heap_changes):
                        marks[i] = pg.heap_mb()
                heap_rows.append(["page", "2,048", f"{marks[10]:.1f}", f"{marks[args.heap_changes]:.1f}",
                                  f"{marks[args.heap_changes] - marks[10]:+.1f}"])
                pg.page.close()
        finally:
            browser.close()
            for demo in apps:
                demo.close()

    if open_rows:
        print("\npage open -> first painted plot (chair, 2,048 points), ms: median, min-max; median one frame later")
        bu.print_table(["render", "median ms", "range", "one frame later"], open_rows)
    print("\ninput event -> painted frame with the new data, ms (median); the speed-up with both ends one frame "
          "later; requests per change: server / page")
    bu.print_table(["change", "points", "panels", "server render", "page render", "speed-up",
                    "one frame later", "requests", "page range"], rows)
    if heap_rows:
        print(f"\nJS heap (MB, after garbage collection) after 10 and {args.heap_changes} changes")
        bu.print_table(["render", "points", "after 10", f"after {args.heap_changes}", "growth"], heap_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
