"""Are the attention maps and views bit-identical between a reference git revision and the working tree?

    python bench/check_maps_identical.py                 # ref HEAD vs the working tree
    python bench/check_maps_identical.py --ref 0540fe9

Checks out the reference revision as a temporary `git worktree`, then runs `dump` below twice in a subprocess,
once with PYTHONPATH at each tree; both read the same checkpoint files (the working tree's checkpoints/, by
absolute path). `dump` saves, for every usable checkpoint on every built-in cloud (each synthetic category,
Gradio's sample meshes, three files of ../shared/samples when present): the raw attention of every layer and
head, CLS -> patch per head, rollout, query maps, the values and figure JSON of the app's views, the info and
card texts and the exports. Prints one line per checkpoint x cloud, then IDENTICAL (exit 0) or DIFFERENT (1).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("bunny.pcd", "chair_model.obj", "fuze_ascii.ply")
VIEWS = [dict(mode="cls"), dict(mode="cls", head="max", patchings=4), dict(mode="heads", layer=0),
         dict(mode="rollout"), dict(mode="query", query=0, layer=1), dict(mode="query", query=7, keep=0.6),
         dict(mode="query", query=31, units="raw"), dict(mode="crop", query=5), dict(mode="pca"),
         dict(mode="similarity", query=3), dict(mode="cls", up="z", fps_start="index0", color_range="robust")]


def _digest(s: str | bytes) -> np.ndarray:
    return np.array(hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest())


def dump(checkpoints: str, samples: str, out: str) -> None:
    """Every map and view of every checkpoint on every built-in cloud, into one .npz."""
    import pcdviz
    from pcdviz.explorer import Explorer, ViewSettings, colorize

    tree = Path(os.environ["PYTHONPATH"]).resolve()
    assert Path(pcdviz.__file__).resolve().is_relative_to(tree), f"pcdviz from {pcdviz.__file__}, not {tree}"
    ex = Explorer(checkpoints, max_clouds=64, max_maps=256)
    clouds = [ex.load_shape(c, 0, 1024).cloud_id for c in ex.categories()]
    clouds += [ex.load_mesh(m).cloud_id for m in ex.mesh_assets()]
    clouds += [ex.load_upload(Path(samples) / f).cloud_id for f in SAMPLES if (Path(samples) / f).is_file()]
    names = ex.usable_checkpoints()
    arrays = {}
    for name in names:
        arrays[f"{name}::card"] = _digest(ex.checkpoint_card_markdown(name) + repr(ex.checkpoint_shape(name)))
        for cid in clouds:
            key = f"{name}::{cid}"
            m = ex.maps(name, cid).maps
            arrays[f"{key}::attentions"] = np.asarray(m.attentions)
            arrays[f"{key}::patch_tokens"] = np.asarray(m.patch_tokens)
            arrays[f"{key}::cls_per_head"] = np.stack([m.cls_to_patches(layer, h) for layer in range(len(m.attentions))
                                                      for h in range(m.attentions.shape[1])])
            arrays[f"{key}::rollout"] = np.asarray(m.rollout(head_fusion="mean"))
            arrays[f"{key}::patching3"] = np.asarray(ex.maps(name, cid, patching=3).maps.attentions)
            arrays[f"{key}::info"] = _digest(ex.cloud_info_markdown(ex.cloud(cid), name, ViewSettings()))
            arrays[f"{key}::pick"] = np.array(ex.pick(name, cid, ex.cloud(cid).points[10]))
            for i, v in enumerate(VIEWS):
                s = ViewSettings.parse(**{"patchings": 1, **v})
                view = ex.view(name, cid, s, compare=names[:2] if v["mode"] == "query" and v["query"] == 7 else None)
                arrays[f"{key}::view{i}/figure"] = _digest(view.figure.to_json() + view.caption)
                for j, p in enumerate(view.panels):
                    arrays[f"{key}::view{i}/panel{j}/values"] = p.values
                    arrays[f"{key}::view{i}/panel{j}/patch_values"] = p.patch_values
                    if p.values.ndim == 1:
                        arrays[f"{key}::view{i}/panel{j}/colours"] = colorize(p.values, s.colorscale, 0.0, 2.0)
                if i == 1:  # the exports of one view per checkpoint x cloud
                    arrays[f"{key}::ply"] = _digest(ex.export_ply(view).read_bytes())
                    if cid == clouds[0]:   # plotly's div id is a fresh uuid4 on every call
                        html = ex.export_html(view).read_text()
                        arrays[f"{key}::html"] = _digest(re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", html))
                    with np.load(ex.export_npz(view)) as z:
                        arrays.update({f"{key}::npz/{k}": z[k] for k in z.files})
    np.savez(out, **arrays)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="HEAD", help="git revision to compare the working tree with (default HEAD)")
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    ap.add_argument("--samples", default=str(ROOT.parent / "shared" / "samples"))
    ap.add_argument("--dump", help=argparse.SUPPRESS)   # internal: the subprocess's output file
    args = ap.parse_args()
    if args.dump:
        dump(args.checkpoints, args.samples, args.dump)
        return 0
    with tempfile.TemporaryDirectory(prefix="pcdviz-maps-") as tmp:
        ref_tree = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(ref_tree), args.ref],
                       check=True)
        try:
            outs, procs = {}, []
            for label, tree in (("ref " + args.ref, ref_tree), ("working tree", ROOT)):   # both at once
                print(f"dumping {label} ({tree})", flush=True)
                outs[label] = Path(tmp) / f"{tree.name}.npz"
                env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
                procs.append(subprocess.Popen([sys.executable, __file__, "--dump", str(outs[label]), "--checkpoints",
                                               str(Path(args.checkpoints).resolve()), "--samples", args.samples],
                                              env=env, cwd=tmp, stdout=subprocess.DEVNULL))
            if any(p.wait() for p in procs):
                raise SystemExit("a dump failed (its traceback is above)")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref_tree)], check=False)
        a, b = (np.load(p) for p in outs.values())
        groups: dict[str, list[str]] = {}
        for k in sorted(set(a.files) | set(b.files)):
            group = "::".join(k.split("::")[:2])
            same = k in a.files and k in b.files and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
            groups.setdefault(group, [])
            if not same:
                groups[group].append(k.split("::", 2)[-1])
    for group, bad in groups.items():
        print(f"{group}: " + ("identical" if not bad else f"DIFFERENT ({len(bad)}: {', '.join(bad[:4])})"))
    ok = not any(groups.values())
    print(f"{len(groups)} checkpoint x cloud groups, {len(set(a.files) | set(b.files))} arrays: "
          + ("IDENTICAL" if ok else "DIFFERENT"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
