"""Make docs/features-pca.png and docs/features-similarity.png: dwc-tiny's patch-feature views (issue 17).

    .venv/bin/python docs/make_feature_screenshots.py      # needs Debian's chromium (scripts/setup.sh --test)

PCA: two synthetic chairs and a bench, one basis fitted on all three (the same colour = the same feature
direction). Similarity: patch tokens of a second chair and of a bench against one query patch of the first
chair, each panel's best match highlighted, with the reverse check in its title. The explorer builds each view
as the app would; the figure is written as standalone HTML (the app's HTML export) and photographed.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from pcdviz.explorer import Explorer, ViewSettings
    from pcdviz.headless import chromium_page

    ex = Explorer(REPO / "checkpoints")
    a, b, c = (ex.load_shape(cat, seed=s).cloud_id for cat, s in (("chair", 0), ("chair", 1), ("bench", 0)))
    views = {"pca": ViewSettings.parse(mode="pca", others=[b, c]),
             "similarity": ViewSettings.parse(mode="similarity", query=12, others=[b, c])}
    for name, settings in views.items():
        view = ex.view("dwc-tiny", a, settings)
        html = ex.export_html(view)
        out = REPO / "docs" / f"features-{name}.png"
        with chromium_page(html.as_uri(), 1500, 620, wait_for=".js-plotly-plot") as page:
            page.wait_for_timeout(1500)   # let plotly finish drawing every scene
            page.screenshot(path=str(out))
        print(f"wrote {out}: {view.caption}; " + " | ".join(p.title for p in view.panels))


if __name__ == "__main__":
    main()
