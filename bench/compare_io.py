"""pcdviz.io in this tree against pcdviz.io at a git commit, on the same hostile files: does every file end the
same way? (issue 18: the io package split and the library swaps must not change behaviour)

    nice -n 10 .venv/bin/python bench/compare_io.py --against 93b856e                  # ~3 min on the 2-core VM
    .venv/bin/python bench/compare_io.py --against 93b856e --fuzz-cases 20 --sample-cases 2   # a quick look
    .venv/bin/python bench/compare_io.py --against 93b856e --maps     # also the shipped checkpoints' maps

The files are bench/bench_parsers.py's hostile cases, built by the tests' own builders (tests/test_hardening.py's
hand-made files and uploads, the fuzzer's absurd counts on each seed, test_fuzz.py's mutated_file drawn per seed
format and mutation drawn per real sample in ../shared/samples, derandomized) and its bare LZF blocks (each
decoder on its own). Both versions load each file in this process, one after the other. An outcome is the same
when both return the same cloud bit for bit (points, colours, normals, labels) or both raise PointCloudError;
refusals whose sentences differ are counted apart (the first 3 of each extension listed), and so is any file
one version loads and the other refuses (a change of behaviour). The slowest file of each version is named.

--maps: every shipped checkpoint's attention maps on every real file (../shared/samples and every mesh Gradio
ships), uploaded through an Explorer whose pcdviz.io is one version, then the other (three views: the
default, layer 0 head 0, and an index-0 FPS start with one patching), compared bit for bit.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchutil as bu  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def outcome(mod, path: Path):
    """('cloud', arrays) or ('refused', sentence) for one load by one version of pcdviz.io, and its seconds."""
    t = time.perf_counter()
    try:
        if path.suffix == ".lzf":  # a bare LZF block: the decoder alone (bench_parsers.lzf_block's layout)
            data = path.read_bytes()
            out = ("cloud", [np.frombuffer(mod._lzf_decompress(data[4:], int.from_bytes(data[:4], "little")), "u1")])
        else:
            c = mod.load_point_cloud(path)
            out = ("cloud", [c.points, c.colors, c.normals, c.labels])
    except (mod.PointCloudError, mod._Fail) as e:
        out = ("refused", str(e).replace(str(path.parent) + "/", ""))
    return out, time.perf_counter() - t


def same_arrays(a: list, b: list) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and x.dtype == y.dtype
                                             and x.shape == y.shape and x.tobytes() == y.tobytes())
               for x, y in zip(a, b))


MAP_VIEWS = {"default": {}, "layer 0 head 0": {"layer": 0, "head": "0"},
             "index0 start, 1 patching": {"fps_start": "index0", "patchings": 1}}


def explorer_maps(io_module) -> dict:
    """(checkpoint, file, view, panel) -> per-point map, through an Explorer whose pcdviz.io is io_module (the
    Explorer imports pcdviz.io at each call, so swapping the module swaps every load, normalise and resample)."""
    import pcdviz
    from pcdviz.explorer import Explorer, ViewSettings, gradio_assets_dir

    samples = REPO.parent / "shared" / "samples"
    files = sorted(samples.iterdir()) if samples.is_dir() else []
    files += sorted(gradio_assets_dir().iterdir()) if gradio_assets_dir() is not None else []
    files = [f for f in files if f.suffix.lower() in io_module.SUPPORTED_EXTENSIONS]
    saved = pcdviz.io, sys.modules["pcdviz.io"]
    pcdviz.io = sys.modules["pcdviz.io"] = io_module
    try:
        ex = Explorer(REPO / "checkpoints", max_clouds=64, max_maps=256, max_patching_sets=64)
        out = {}
        for ck in ex.usable_checkpoints():
            for f in files:
                cloud_id = ex.load_upload(f).cloud_id
                for view, kw in MAP_VIEWS.items():
                    for i, panel in enumerate(ex.view(ck, cloud_id, ViewSettings(**kw)).panels):
                        out[ck, f.name, view, i] = np.asarray(panel.values)
    finally:
        pcdviz.io, sys.modules["pcdviz.io"] = saved
    return out


def maps_part(old) -> None:
    from pcdviz import io as new

    a, b = explorer_maps(new), explorer_maps(old)
    differ = sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not same_arrays([a[k]], [b[k]]))
    n_ck, n_files = len({k[0] for k in a}), len({k[1] for k in a})
    print(f"\nmaps: {len(a):,} attention maps ({n_ck} checkpoints x {n_files} files x {len(MAP_VIEWS)} views), "
          f"{len(differ)} differ bit for bit" + "".join(f"\n- {k}" for k in differ[:20]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", metavar="REF", required=True, help="the git commit to compare with")
    ap.add_argument("--fuzz-cases", type=int, default=60, help="mutated files drawn per seed format and LZF block")
    ap.add_argument("--sample-cases", type=int, default=6, help="mutated files drawn per real sample")
    ap.add_argument("--maps", action="store_true", help="also compare the shipped checkpoints' attention maps")
    args, _ = ap.parse_known_args(argv)
    # numpy's cast warnings on damaged values (the same in both versions) would bury the table
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    sys.path.insert(0, str(REPO / "tests"))  # the hostile-file builders of test_fuzz.py and test_hardening.py
    import bench_io
    import bench_parsers
    from pcdviz import io as new

    counts, listed, slowest = Counter(), [], {"this tree": (0.0, ""), args.against: (0.0, "")}
    with tempfile.TemporaryDirectory(prefix="pcdviz-compare-io-") as tmp:
        old = bench_io.io_at(args.against, Path(tmp))
        cases_dir = Path(tmp) / "cases"
        cases_dir.mkdir()
        hand, drawn = bench_parsers.hostile_cases(cases_dir, args.fuzz_cases, args.sample_cases)
        for label, path in hand + drawn:
            (a, ta), (b, tb) = outcome(new, path), outcome(old, path)
            for who, t in (("this tree", ta), (args.against, tb)):
                if t > slowest[who][0]:
                    slowest[who] = (t, label)
            kind = path.suffix.lower()
            if a[0] == b[0] == "cloud":
                key = "same cloud" if same_arrays(a[1], b[1]) else "DIFFERENT cloud"
            elif a[0] == b[0] == "refused":
                key = "both refused, same sentence" if a[1] == b[1] else "both refused, other sentence"
            else:
                key = f"CHANGED: {b[0]} at {args.against}, {a[0]} here"
            counts[key, kind] += 1
            shown = sum(1 for k, e, _ in listed if k == key and e == kind)
            if key != "same cloud" and key != "both refused, same sentence" and (shown < 3 or key[0] != "b"):
                listed.append((key, kind, f"- {label}: {key}\n    here: {str(a[1])[:300] if a[0] == 'refused' else 'a cloud'}\n"
                              f"    {args.against}: {str(b[1])[:300] if b[0] == 'refused' else 'a cloud'}"))
    print(bu.header("compare_io") + f"\n# {len(hand) + len(drawn)} files ({len(hand)} made by hand, {len(drawn)} "
          f"drawn: {args.fuzz_cases} per seed format and LZF block, {args.sample_cases} per real sample)")
    kinds = sorted({k for _, k in counts})
    keys = sorted({k for k, _ in counts})
    bu.print_table(["outcome", *kinds, "all"],
                   [[k, *[f"{counts[k, e]:,}" for e in kinds], f"{sum(counts[k, e] for e in kinds):,}"] for k in keys])
    for who, (t, label) in slowest.items():
        print(f"slowest file, {who}: {t * 1e3:.0f} ms ({label})")
    print("\n".join(t for *_, t in listed) if listed else "(every file ended the same way)")
    if args.maps:
        maps_part(old)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
