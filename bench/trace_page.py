"""Where a head change's time goes on the page's main thread: a chromium trace of head changes.

    .venv/bin/python bench/trace_page.py [--changes 3] [--points 2048] [--render page|server]

Launches the app, opens it in Debian's headless chromium, and records a trace (playwright's tracing:
devtools.timeline, blink.user_timing) over --changes head changes made as bench/bench_page.py makes them.
For each change it prints the renderer main thread's work from the pointer going down (the input events,
each frame's animation callbacks, style, layout, paint and commit) and when the new colours went to the
plot: `pcdviz.local` entered (page render) or `Plotly.react` called by gr.Plot (server render), and whether
that was inside a frame's animation callbacks or in a task between frames. It answers questions such as
"which frame paints the change?" (BENCHMARKS.md, "The end of a change").
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import bench_page as bp  # noqa: E402  (the bench's page driver and probe)
import benchutil as bu  # noqa: E402

SHOWN = {"EventDispatch", "ProxyMain::BeginMainFrame", "FireAnimationFrame", "RunMicrotasks", "UpdateLayoutTree",
         "Layout", "Paint", "Commit", "TimerFire", "FunctionCall"}
MARK = "pcd-local"


def main_thread_events(trace: dict) -> list[dict]:
    """The complete ('X') events of the renderer's main thread (the one that dispatched pointerdown)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    mains = {k for k, v in names.items() if v == "CrRendererMain"}
    return sorted((e for e in events if (e.get("pid"), e.get("tid")) in mains and e.get("ph") == "X"),
                  key=lambda e: e["ts"])


def timelines(trace: dict, after_ms: float = 80.0, min_ms: float = 0.3) -> list[list[str]]:
    """One list of lines per mark: the main thread's events from the pointer going down."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    main = main_thread_events(trace)
    downs = [e for e in main if e["name"] == "EventDispatch" and e["args"].get("data", {}).get("type") == "pointerdown"]
    out = []
    for mark in sorted((e for e in events if e.get("name") == MARK), key=lambda e: e["ts"]):
        down = max((d for d in downs if d["ts"] <= mark["ts"]), key=lambda d: d["ts"], default=None)
        if down is None:
            continue
        t0 = down["ts"]
        in_frame = any(e["name"] == "FireAnimationFrame" and e["ts"] <= mark["ts"] <= e["ts"] + e.get("dur", 0)
                       for e in main)
        lines = [f"pointerdown -> the new colours go to the plot at +{(mark['ts'] - t0) / 1000:.1f} ms, "
                 + ("inside a frame's animation callbacks" if in_frame else "in a task between frames")]
        for e in main:
            if t0 - 1000 <= e["ts"] <= t0 + after_ms * 1000 and e["name"] in SHOWN and e.get("dur", 0) >= min_ms * 1000:
                data = e.get("args", {}).get("data", {})
                what = data.get("type") or data.get("functionName") or Path(data.get("url", "")).name
                lines.append(f"  +{(e['ts'] - t0) / 1000:6.1f} ms  {e['dur'] / 1000:5.1f} ms  {e['name']} {what}".rstrip())
        out.append(lines)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=3)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--render", choices=bp.RENDERS, default="page")
    args = ap.parse_args(argv)
    print(bu.header("trace_page"))

    from playwright.sync_api import sync_playwright

    from pcdviz.app import build_app, launch
    from pcdviz.explorer import Explorer
    from pcdviz.headless import CHROMIUM, CHROMIUM_ARGS, free_port

    demo = build_app(Explorer(REPO / "checkpoints"), render=args.render)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    heads = ["1", "4", "2", "5", "0", "3"]
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = bp.Page(browser, f"http://127.0.0.1:{port}/", args.render)
            if args.points != 2048:
                page.server_event(bp.load_cloud(args.points), "CLS")
            # the mark: the page's recolour, or gr.Plot's Plotly.react of the server's new figure
            owner = "window.pcdviz" if args.render == "page" else "window.Plotly"
            name = "local" if args.render == "page" else "react"
            page.page.evaluate(f"""() => {{ const f = {owner}.{name};
                {owner}.{name} = function (...a) {{ performance.mark('{MARK}'); return f.apply(this, a); }}; }}""")
            page.timed(None, bp.choose_head("mean"))   # one change before the trace (first-call costs)
            path = Path(tmp) / "trace.json"
            browser.start_tracing(page=page.page, path=str(path),
                                  categories=["devtools.timeline", "blink.user_timing", "disabled-by-default-devtools.timeline"])
            for i in range(args.changes):
                ms, later, _ = page.timed(None, bp.choose_head(heads[i % len(heads)]))
                print(f"head change {i + 1}: {ms:.0f} ms to the painted frame (bench_page's end), {later:.0f} one frame later")
            browser.stop_tracing()
            browser.close()
            for lines in timelines(json.loads(path.read_text())):
                print("\n" + "\n".join(lines))
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
