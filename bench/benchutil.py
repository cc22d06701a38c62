"""What every bench script shares: timing, the header line, table printing, and a PNG line plot.

Not a benchmark itself (`pcdviz bench` runs only bench_*.py). The plot is drawn with Pillow (a Gradio
dependency, so always installed) rather than matplotlib, which pcdviz does not depend on.
"""
from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import sys
import time

# Spinning OpenMP threads make 2-thread torch crawl on a shared machine; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times in seconds of `repeats` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(ts: list[float]) -> float:
    return statistics.median(ts)


def ms(ts: list[float]) -> str:
    """'median (min-max)' in milliseconds."""
    return f"{med(ts) * 1e3:.2f} ({min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f})"


def header(name: str) -> str:
    """One line: script, date, machine, CPUs, load, python/torch versions, threads, the command."""
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    try:
        import torch
        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:  # pragma: no cover
        tv = "no torch"
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    return (f"# {name}  {time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.node()}  {os.cpu_count()} CPUs  "
            f"load {load}  python {platform.python_version()}  {tv}  "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}\n# command: {cmd}")


def print_table(columns: list[str], rows: list[list], align: str | None = None) -> None:
    """A Markdown table; `align` is one 'l'/'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(columns) - 1)
    cells = [[str(c) for c in columns]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(columns))]

    def line(r):
        return "| " + " | ".join(c.ljust(w[i]) if align[i] == "l" else c.rjust(w[i]) for i, c in enumerate(r)) + " |"

    print(line(cells[0]))
    print("|" + "|".join(("-" * (w[i] + 1) + ":") if align[i] == "r" else ("-" * (w[i] + 2))
                         for i in range(len(columns))) + "|")
    for r in cells[1:]:
        print(line(r))
    sys.stdout.flush()


# --------------------------------------------------------------------------- PNG plot (Pillow)

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127)]


def loglog_png(path: str, panels: list[dict], size: tuple[int, int] = (1100, 460)) -> None:
    """Side-by-side log-log line plots. Each panel: {"title", "xlabel", "ylabel", "series": {name: [(x, y)]}}."""
    from PIL import Image, ImageDraw, ImageFont

    W, H = size
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    pw = W // len(panels)
    for p, panel in enumerate(panels):
        x0, y0, x1, y1 = p * pw + 70, 40, (p + 1) * pw - 20, H - 60  # plot area
        pts = [xy for s in panel["series"].values() for xy in s if xy[1] > 0]
        lx = [math.log10(x) for x, _ in pts]
        ly = [math.log10(y) for _, y in pts]
        ax_lo, ax_hi = math.floor(min(lx)), math.ceil(max(lx))
        ay_lo, ay_hi = math.floor(min(ly)), math.ceil(max(ly))
        ax_hi += ax_hi == ax_lo
        ay_hi += ay_hi == ay_lo

        def to_px(x, y):
            return (x0 + (math.log10(x) - ax_lo) / (ax_hi - ax_lo) * (x1 - x0),
                    y1 - (math.log10(y) - ay_lo) / (ay_hi - ay_lo) * (y1 - y0))

        for e in range(ax_lo, ax_hi + 1):  # decade grid and labels
            X = to_px(10 ** e, 10 ** ay_lo)[0]
            d.line([(X, y0), (X, y1)], fill=(225, 225, 225))
            d.text((X - 12, y1 + 6), f"1e{e}", fill="black", font=font)
        for e in range(ay_lo, ay_hi + 1):
            Y = to_px(10 ** ax_lo, 10 ** e)[1]
            d.line([(x0, Y), (x1, Y)], fill=(225, 225, 225))
            d.text((x0 - 45, Y - 7), f"1e{e}", fill="black", font=font)
        d.rectangle([x0, y0, x1, y1], outline="black")
        d.text((x0, 12), panel["title"], fill="black", font=font)
        d.text(((x0 + x1) // 2 - 40, y1 + 26), panel["xlabel"], fill="black", font=font)
        d.text((p * pw + 4, y0 - 24), panel["ylabel"], fill="black", font=font)
        for i, (name, series) in enumerate(panel["series"].items()):
            c = _COLOURS[i % len(_COLOURS)]
            xy = [to_px(x, y) for x, y in series if y > 0]
            if len(xy) > 1:
                d.line(xy, fill=c, width=2)
            for X, Y in xy:
                d.ellipse([X - 3, Y - 3, X + 3, Y + 3], fill=c)
            d.text((x0 + 8, y0 + 6 + 16 * i), f"- {name}", fill=c, font=font)
    img.save(path)
