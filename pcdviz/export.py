"""`pcdviz export CHECKPOINT FILE --out PATH`: what the explorer would show, written without a browser.

The suffix of --out picks the format, the same three the app offers: `.npz` (raw attention maps, centres,
groups, features and the values shown), `.ply` (the cloud coloured by the values, plus an `attention`
scalar property; opens in MeshLab/CloudCompare) or `.html` (the standalone interactive figure).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pcdviz.explorer import (COLOR_RANGES, DEFAULT_PATCHINGS, FPS_STARTS, MODES, PATCHINGS_MAX, UNITS, UP_AXES, Explorer,
                             ExplorerError, ViewSettings)
from pcdviz.checkpoints import CheckpointError
from pcdviz.io import PointCloudError


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="pcdviz export", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="a checkpoint folder (config.json + model.safetensors)")
    ap.add_argument("file", type=Path, help="a point cloud or mesh in any format pcdviz.io reads")
    ap.add_argument("--out", type=Path, required=True, help="output path ending in .npz, .ply or .html")
    ap.add_argument("--mode", default="cls", choices=MODES, help="what to show (as in the app's View radio)")
    ap.add_argument("--layer", type=int, default=-1, help="layer, -1 for the last")
    ap.add_argument("--head", default="mean", help="a head number, or mean | max | min")
    ap.add_argument("--query", type=int, default=0, help="query patch (query and crop modes)")
    ap.add_argument("--keep", type=float, default=1.0, help="keep this share of the attention mass (1 = all)")
    ap.add_argument("--up", default="auto", choices=UP_AXES,
                    help="the file's axis that points up (auto: the format's convention, else y)")
    ap.add_argument("--fps-start", default="geometric", choices=list(FPS_STARTS),
                    help="where farthest point sampling starts: geometric (any point order gives the same map) "
                         "or index0 (the file's first point, as in training)")
    ap.add_argument("--patchings", type=int, default=DEFAULT_PATCHINGS,
                    help=f"average the maps over this many patchings, 1-{PATCHINGS_MAX} (default {DEFAULT_PATCHINGS})")
    ap.add_argument("--units", default="uniform", choices=list(UNITS),
                    help="uniform: attention as a multiple of uniform (1 = every patch alike); raw: the weights")
    ap.add_argument("--color-range", default="auto", choices=list(COLOR_RANGES),
                    help="colour range of the PLY and HTML (auto: 0 to max, at least 0 to 2x uniform)")
    ap.add_argument("--h5-key", default=None, help="dataset key inside an .h5 file")
    ap.add_argument("--h5-index", type=int, default=0, help="sample index inside an .h5 file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the export; errors are one sentence on stderr and exit code 1."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    exporters = {".npz": Explorer.export_npz, ".ply": Explorer.export_ply, ".html": Explorer.export_html}
    suffix = args.out.suffix.lower()
    if suffix not in exporters:
        print(f"pcdviz export: --out must end in one of {', '.join(exporters)}, got {args.out.name!r}", file=sys.stderr)
        return 2
    folder = args.checkpoint.resolve()
    try:
        explorer = Explorer(folder.parent)
        if folder.name not in explorer.usable_checkpoints():
            raise ExplorerError(f"{args.checkpoint} is not a usable checkpoint folder (config.json + model.safetensors)")
        cloud = explorer.load_upload(args.file, h5_key=args.h5_key, h5_index=args.h5_index)
        settings = ViewSettings.parse(mode=args.mode, layer=args.layer, head=args.head, query=args.query, keep=args.keep,
                                      color_range=args.color_range, units=args.units, up=args.up,
                                      fps_start=args.fps_start, patchings=args.patchings)
        view = explorer.view(folder.name, cloud.cloud_id, settings)
        written = exporters[suffix](explorer, view)
    except (ExplorerError, PointCloudError, CheckpointError) as e:
        print(f"pcdviz export: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(written), args.out)
    print(f"wrote {args.out} ({view.panels[0].title})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
