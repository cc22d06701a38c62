"""Evaluate a checkpoint folder: linear SVM, few-shot N-way K-shot, attention-part alignment.

    python -m training.evaluate checkpoints/dwc-tiny                      # synthetic shapes
    python -m training.evaluate CKPT --dataset data/ModelNet/modelnet40_normal_resampled
    python -m training.evaluate CKPT --dataset data/modelnet40_ply_hdf5_2048
    python -m training.evaluate CKPT --dataset data/ScanObjectNN --variant all    # OBJ_BG, OBJ_ONLY, PB_T50_RS

Protocol (the field's, on frozen features): every shape is FPS-sampled to the model's n_points,
the feature is the L2-normalised final CLS token concatenated with the L2-normalised max-pooled
patch tokens (default --feature cls+max; it beat the CLS token alone by 1.5-3 points for both a
random and a briefly trained tiny model; --feature cls for the CLS token only), a LinearSVC is
trained on the train split with C chosen on a stratified validation split carved from it (then
refit on the whole train split), and test accuracy is reported. The C grid is wide (0.01 .. 1000):
untrained features are concentrated (pairwise cosine ~0.996) and need C of 100-1000, so a grid
that stops at 10 under-reports the random baseline (79% instead of 92% for random-tiny).
Few-shot, as Point-BERT and its successors run it: for each of 5-way 10-shot, 5-way 20-shot,
10-way 10-shot and 10-way 20-shot, 10 fixed trials (trial t draws with seed (seed, N, K, t)); a
trial picks N classes, K support shapes per class from the train split and 20 query shapes per
class from the test split, fits the same LinearSVC (C as chosen above) on the support and scores
the queries; mean and std over the trials. Only classes with K train and 20 test shapes can be
drawn; a setting without N such classes is left out (named in evaluation.fewshot_skipped), never
written as NaN. (Point-BERT fine-tunes on its pickled trials; pcdviz draws its own and keeps the
backbone frozen, as the linear-SVM protocols of CrossPoint and POS-BERT do.)
Attention-part alignment: for test shapes with part labels, each head's best-part IoU of its
last-layer CLS attention (keeping 60% of the mass), averaged over heads, then over shapes.
The scores go into the card (`scores`) and the protocol details into `evaluation`.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC
from tqdm import tqdm

from pcdviz.attention import AttentionMaps
from pcdviz.head_stats import head_statistics
from pcdviz.checkpoints import CheckpointError, load_checkpoint, read_card, update_card
from pcdviz.data import DatasetError
from pcdviz.ops import farthest_point_sample, index_points

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)   # wide: untrained features are concentrated and need a large C
FEATURES = ("cls", "cls+max")


FEWSHOT_SETTINGS = ((5, 10), (5, 20), (10, 10), (10, 20))
FEWSHOT_QUERY = 20
FEWSHOT_TRIALS = 10


def open_split(dataset: str, split: str, n_points: int = 2048, per_class: int = 0, variant: str | None = None,
               background: str = "keep"):
    """A split of the synthetic shapes or of a release by path (pcdviz.data.open_dataset, official split)."""
    if dataset == "synthetic":
        from pcdviz.data import SyntheticShapes
        kwargs = {"n_per_class": per_class} if per_class else {}
        return SyntheticShapes(split, n_points=n_points, **kwargs)
    from pcdviz.data import open_dataset
    return open_dataset(dataset, split, n_points, variant=variant, background=background)


def model_inputs(points: torch.Tensor, n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FPS-sample a batch (B, N, 3) to the model's n_points (as the app does): points and their indices."""
    if points.shape[1] == n_points:
        idx = torch.arange(n_points).expand(points.shape[0], -1)
        return points, idx
    if points.shape[1] < n_points:   # too few points: repeat some (as pcdviz.io.resample pads)
        idx = torch.arange(n_points).remainder(points.shape[1]).expand(points.shape[0], -1)
    else:
        idx = farthest_point_sample(points, n_points)
    return index_points(points, idx), idx


def item_batches(dataset, batch_size: int, workers: int = 0):
    """The data set's items in order, as lists of batch_size; read by `workers` DataLoader processes (0 = here),
    which is what makes a text release such as modelnet40_normal_resampled quick to read."""
    if workers <= 0:
        for start in range(0, len(dataset), batch_size):
            yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        return
    yield from torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list)


@torch.no_grad()
def extract_features(model, dataset, feature: str = "cls", batch_size: int = 64,
                     device: str = "cpu", workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised global features (S, D or 2D) and labels (S,) of every shape in `dataset`."""
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    n_points = model.config.n_points
    feats, labels = [], []
    for items in tqdm(item_batches(dataset, batch_size, workers), total=-(-len(dataset) // batch_size),
                      desc="[eval] features", unit="batch", leave=False, disable=len(dataset) < 20 * batch_size,
                      mininterval=2.0):
        points = torch.stack([torch.as_tensor(it["points"], dtype=torch.float32) for it in items])
        x, _ = model_inputs(points, n_points)
        out = model(x.to(device))
        f = F.normalize(out.cls.float(), dim=-1)
        if feature == "cls+max":
            f = torch.cat([f, F.normalize(out.patches.float().amax(dim=1), dim=-1)], dim=-1)
        feats.append(f.cpu().numpy())
        labels += [int(it["label"]) for it in items]
    return np.concatenate(feats), np.asarray(labels)


def _fit_svm(x: np.ndarray, y: np.ndarray, C: float, seed: int = 0) -> LinearSVC:
    """A LinearSVC fit on (x, y) (liblinear may stop at max_iter for the largest C: close enough to rank C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LinearSVC(C=C, max_iter=5000, random_state=seed).fit(x, y)


def svm_accuracy(train_x, train_y, test_x, test_y, c_grid=C_GRID, val_fraction: float = 0.2,
                 seed: int = 0) -> dict:
    """Linear-SVM test accuracy with C picked on a stratified validation split of the training features.

    The validation split holds val_fraction of the shapes and at least one per class; a train split too
    small for that (a class with one shape) keeps C = 1 and says so in the result (C_note)."""
    n_classes = len(np.unique(train_y))
    n_val = max(int(round(val_fraction * len(train_y))), n_classes)
    if np.bincount(np.unique(train_y, return_inverse=True)[1]).min() < 2 or len(train_y) - n_val < n_classes:
        clf = _fit_svm(train_x, train_y, 1.0, seed)
        return {"acc": float((clf.predict(test_x) == test_y).mean()), "C": 1.0, "val_acc": {},
                "C_note": "train split too small for a validation split with every class; C = 1 unselected"}
    tr_x, va_x, tr_y, va_y = train_test_split(train_x, train_y, test_size=n_val, random_state=seed,
                                              stratify=train_y)
    val_acc = {C: float((_fit_svm(tr_x, tr_y, C, seed).predict(va_x) == va_y).mean()) for C in c_grid}
    best_c = max(c_grid, key=lambda C: (val_acc[C], -C))   # ties: the stronger regularisation
    clf = _fit_svm(train_x, train_y, best_c, seed)
    return {"acc": float((clf.predict(test_x) == test_y).mean()), "C": best_c, "val_acc": val_acc}


def few_shot_trials(train_x, train_y, test_x, test_y, n_way: int, k_shot: int, n_query: int = FEWSHOT_QUERY,
                    trials: int = FEWSHOT_TRIALS, C: float = 1.0, seed: int = 0) -> tuple[float, float] | str:
    """Point-BERT's few-shot protocol on frozen features: (mean, std) accuracy over `trials` fixed trials, or
    the sentence saying why the setting cannot be run. Trial t: N classes, K train + n_query test shapes each."""
    classes = [c for c in np.unique(train_y) if (train_y == c).sum() >= k_shot and (test_y == c).sum() >= n_query]
    if len(classes) < n_way:
        return (f"only {len(classes)} classes have {k_shot} train and {n_query} test shapes "
                f"({n_way} are needed)")
    accs = []
    for t in range(trials):
        rng = np.random.default_rng((seed, n_way, k_shot, t))
        chosen = rng.choice(classes, n_way, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for new_label, c in enumerate(chosen):
            s_idx = rng.choice(np.flatnonzero(train_y == c), k_shot, replace=False)
            q_idx = rng.choice(np.flatnonzero(test_y == c), n_query, replace=False)
            sx.append(train_x[s_idx]); qx.append(test_x[q_idx])
            sy += [new_label] * k_shot; qy += [new_label] * n_query
        clf = _fit_svm(np.concatenate(sx), np.asarray(sy), C, seed)
        accs.append(float((clf.predict(np.concatenate(qx)) == np.asarray(qy)).mean()))
    return float(np.mean(accs)), float(np.std(accs))


def finite_scores(scores: dict) -> dict:
    """The scores without any non-finite number (NaN, inf): a score is a number or absent, never bare NaN in JSON."""
    out = {}
    for k, v in scores.items():
        if isinstance(v, dict):
            out[k] = finite_scores(v)
        elif not (isinstance(v, float) and not np.isfinite(v)):
            out[k] = v
    return out


def benchmark_key(dataset: str, info: dict) -> str:
    """The card's name for an evaluation's data: synthetic, ModelNet40Resampled, ModelNet40H5, ScanObjectNN/PB_T50_RS, ..."""
    if dataset == "synthetic":
        return "synthetic"
    return info["reader"] + (f"/{info['variant']}" if info.get("variant") else "")


def part_iou(model, dataset, per_class: int = 5, layer: int = -1) -> dict:
    """AttentionMaps.head_part_iou averaged over heads, then over `per_class` test shapes per class, under
    both of its rules (each part vs the head's |part| top points; DINO's keep-60%-of-the-mass set): the
    mean IoU, the mean chance-corrected IoU and that mean's standard error; {} without part labels."""
    n_points = model.config.n_points
    rules = {"part_iou": None, "part_iou_mass60": 0.6}
    taken: dict[int, int] = {}
    per_shape: dict[str, list[float]] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        if "parts" not in item:
            return {}
        label = int(item["label"])
        if taken.get(label, 0) >= per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        points = torch.as_tensor(item["points"], dtype=torch.float32)[None]
        x, idx = model_inputs(points, n_points)
        parts = np.asarray(item["parts"])[idx[0].numpy()]
        maps = AttentionMaps.from_model(model, x[0].numpy())
        for name, keep in rules.items():
            heads = maps.head_part_iou(parts, layer=layer, keep=keep)
            per_shape.setdefault(name, []).append(float(heads.iou.mean()))
            per_shape.setdefault(f"{name}_corrected", []).append(float(heads.corrected.mean()))
    out = {}
    for name, values in per_shape.items():
        out[name] = float(np.mean(values))
        if name.endswith("_corrected"):
            out[f"{name}_sem"] = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return out


LOCAL_RATIO = 0.5   # a head is "local" when its distance ratio is at most this (issue 19's bar)


def locality(model, dataset, per_class: int = 1, local_ratio: float = LOCAL_RATIO) -> dict:
    """Head statistics (pcdviz.head_stats: locality, mean attention distance, entropy, and part alignment where
    the shapes have part labels) per layer and head, averaged over the first `per_class` test shapes of every
    class (a fixed set): the (L, H) tables and two summaries."""
    n_points = model.config.n_points
    taken: dict[int, int] = {}
    clouds, parts = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        label = int(item["label"])
        if taken.get(label, 0) >= per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        x, idx = model_inputs(torch.as_tensor(item["points"], dtype=torch.float32)[None], n_points)
        clouds.append(x[0].numpy())
        parts.append(None if item.get("parts") is None else np.asarray(item["parts"])[idx[0].numpy()])
    labels = np.stack(parts) if all(p is not None for p in parts) else None
    stats = head_statistics(model, np.stack(clouds), labels)
    ratio, share = stats["distance_ratio"], stats["argmax_share"]   # (L, H)
    local = (ratio <= local_ratio).sum(1)                            # local heads per layer
    return {"n_shapes": sum(taken.values()), "local_ratio": local_ratio,
            **{k: np.round(v, 3).tolist() for k, v in stats.items()},
            "local_heads": local.tolist(), "local_heads_share_l01": float(local[:2].min() / ratio.shape[1]),
            "argmax_share_mean": float(share.mean())}


def evaluate(folder, dataset: str = "synthetic", feature: str = "cls+max", episodes: int = 10,
             with_part_iou: bool = True, iou_per_class: int = 5, seed: int = 0, device: str = "cpu",
             train_per_class: int = 0, test_per_class: int = 0, c_grid=C_GRID, log=print,
             variant: str | None = None, background: str = "keep", workers: int = 0) -> tuple[dict, dict]:
    """(scores, protocol) of a checkpoint folder; nothing is written. Scores are finite numbers or absent."""
    from pcdviz.data import dataset_info
    t0 = time.time()
    model, card = load_checkpoint(folder, device=device)
    train = open_split(dataset, "train", per_class=train_per_class, variant=variant, background=background)
    test = open_split(dataset, "test", per_class=test_per_class, variant=variant, background=background)
    info = {"train": dataset_info(train), "test": dataset_info(test)}
    log(f"[eval] {folder}: {len(train)} train / {len(test)} test shapes of {info['test']['layout']} "
        f"({info['train']['split_source']}; {info['test']['split_source']}), feature {feature}")
    train_x, train_y = extract_features(model, train, feature, device=device, workers=workers)
    test_x, test_y = extract_features(model, test, feature, device=device, workers=workers)
    t_feat = time.time() - t0
    svm = svm_accuracy(train_x, train_y, test_x, test_y, c_grid=c_grid, seed=seed)
    scores = {"svm_acc": round(svm["acc"], 4)}
    skipped = {}
    for n_way, k_shot in FEWSHOT_SETTINGS:
        name = f"fewshot_{n_way}way{k_shot}shot"
        result = few_shot_trials(train_x, train_y, test_x, test_y, n_way, k_shot, trials=episodes, C=svm["C"],
                                 seed=seed)
        if isinstance(result, str):
            skipped[name] = result
        else:
            scores[name], scores[f"{name}_std"] = round(result[0], 4), round(result[1], 4)
    if with_part_iou:
        scores |= {k: round(v, 4) for k, v in part_iou(model, test, iou_per_class).items()}
    loc = locality(model, test)
    scores |= {"attn_local_heads_l01": round(loc["local_heads_share_l01"], 4),
                "attn_argmax_share": round(loc["argmax_share_mean"], 4)}
    protocol = {"data": dataset, "benchmark": benchmark_key(dataset, info["test"]), "n_train": len(train),
                "n_test": len(test), "train_split": info["train"], "test_split": info["test"], "feature": feature,
                "input": f"FPS to {model.config.n_points} points", "svm_C": svm["C"],
                "svm_val_acc": {str(k): round(v, 4) for k, v in svm["val_acc"].items()},
                **({"svm_C_note": svm["C_note"]} if "C_note" in svm else {}),
                "fewshot": f"Point-BERT's protocol: {episodes} fixed trials per setting, K support shapes per class "
                           f"from the train split, {FEWSHOT_QUERY} queries per class from the test split, LinearSVC "
                           f"(C = {svm['C']:g}) on frozen features",
                "fewshot_skipped": skipped,
                "part_iou": f"last layer's CLS maps, each part vs the head's |part| most-attended points, best part per "
                            f"head, mean over heads and {iou_per_class} test shapes per class; corrected = "
                            "(IoU - chance) / (1 - chance), 0 for a random map; part_iou_mass60: the same with "
                            "the head's set = the points holding 60% of its attention mass (DINO's rule)",
                "attention_locality": loc | {"about": "patch-to-patch attention (CLS dropped, rows renormalised), per layer "
                    "x head, mean over the first test shape of each class: distance_ratio = attention-weighted query-key "
                    "centre distance / mean pairwise centre distance (1 = no preference for near patches); argmax_share = "
                    "share of queries whose most-attended patch is the head's most common one (1 = one map whatever the "
                    "query); local_heads = heads per layer with ratio <= local_ratio; attn_local_heads_l01 (scores) = the "
                    "smaller share of local heads of layers 0 and 1; attn_argmax_share = argmax_share over all heads; "
                    "mean_distance = the attention-weighted query-key centre distance itself (unit-sphere clouds); "
                    "entropy = mean entropy of the patch queries' attention (nats; ln G = uniform); part_iou (part-"
                    "labelled shapes) = each head's chance-corrected part IoU at that layer"},
                "seconds": round(time.time() - t0, 1), "feature_seconds": round(t_feat, 1)}
    return finite_scores(scores), protocol


def format_table(name: str, scores: dict) -> str:
    """The scores as a small text table."""
    rows = [("linear SVM acc", f"{scores['svm_acc'] * 100:.1f}")]
    for n_way, k_shot in FEWSHOT_SETTINGS:
        key = f"fewshot_{n_way}way{k_shot}shot"
        if key in scores:
            rows.append((f"{n_way}-way {k_shot}-shot", f"{scores[key] * 100:.1f} +- {scores[key + '_std'] * 100:.1f}"))
        else:
            rows.append((f"{n_way}-way {k_shot}-shot", "-- (too few shapes per class)"))
    if "part_iou" in scores:
        rows.append(("attention-part IoU", f"{scores['part_iou']:.3f}"))
        rows.append(("  chance-corrected", f"{scores['part_iou_corrected']:.3f} +- {scores['part_iou_corrected_sem']:.3f} (sem)"))
        rows.append(("  keep-60%-mass rule", f"{scores['part_iou_mass60']:.3f}, corrected "
                                             f"{scores['part_iou_mass60_corrected']:.3f} +- {scores['part_iou_mass60_corrected_sem']:.3f}"))
    if "attn_argmax_share" in scores:
        rows.append(("local heads, layers 0-1", f"{scores['attn_local_heads_l01']:.2f} (share of heads, ratio <= {LOCAL_RATIO})"))
        rows.append(("query-argmax share", f"{scores['attn_argmax_share']:.3f} (mean over heads; 1 = one map for every query)"))
    width = max(len(r[0]) for r in rows)
    return "\n".join([name] + [f"  {k:<{width}}  {v}" for k, v in rows])


def format_locality(loc: dict) -> str:
    """The locality tables, one line per layer: each head's distance ratio and query-argmax share."""
    lines = [f"  head statistics over {loc['n_shapes']} shapes, per head: distance ratio / argmax share / "
             f"mean distance / entropy" + (" / part IoU" if "part_iou" in loc else "")]
    keys = ["distance_ratio", "argmax_share", "mean_distance", "entropy"] + (["part_iou"] if "part_iou" in loc else [])
    for layer in range(len(loc["distance_ratio"])):
        heads = zip(*(loc[k][layer] for k in keys))
        lines.append(f"    layer {layer}: " + "  ".join("/".join(f"{x:.2f}" for x in h) for h in heads))
    return "\n".join(lines)


def eval_variants(dataset: str, variant: str | None) -> list[str | None]:
    """--variant as a list: None (the reader's default), the names given, or every ScanObjectNN variant present."""
    if not variant:
        return [None]
    if variant.strip().lower() != "all":
        return [v.strip() for v in variant.split(",") if v.strip()]
    from pcdviz.data.scanobjectnn import VARIANTS, find_scanobjectnn, variant_files
    found = find_scanobjectnn(dataset)
    if found is None:
        raise SystemExit(f"pcdviz eval: --variant all needs a ScanObjectNN release; {dataset} is not one")
    present = [v for v in VARIANTS if variant_files(found[0], v, "train").is_file()
               and variant_files(found[0], v, "test").is_file()]
    return present or [None]


def write_scores(folder, scores: dict, protocol: dict) -> None:
    """The card's scores and evaluation become this evaluation's (no stale key of an earlier data set stays), and
    benchmarks[<data set>] keeps each data set's own, so ModelNet40 and ScanObjectNN scores live side by side."""
    key = protocol["benchmark"]
    update_card(folder, scores=None, evaluation=None)   # update_card merges dicts: clear, then write
    update_card(folder, scores=scores, evaluation=protocol, benchmarks={key: {"scores": scores, "evaluation": protocol}})


def main(argv: list[str] | None = None) -> int:
    """`pcdviz eval CHECKPOINT [...]`: print the table and write the scores into the card."""
    p = argparse.ArgumentParser(prog="pcdviz eval", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint folder(s)")
    p.add_argument("--dataset", default="synthetic",
                   help='"synthetic" or a release by path, detected from its root or a documented sub-path: '
                        'modelnet40_normal_resampled/, modelnet40_ply_hdf5_2048/, ScanObjectNN h5_files/, ...')
    p.add_argument("--variant", help="ScanObjectNN: OBJ_BG, OBJ_ONLY, PB_T50_RS, ... or a comma list, or 'all' "
                                     "(every variant present); ShapeNet: 55 or 34")
    p.add_argument("--background", default="keep", choices=("keep", "drop"),
                   help="ScanObjectNN: keep the background points (the benchmark) or drop those its mask marks")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that read the shapes (DataLoader workers; 0 = this one); speeds up text releases")
    p.add_argument("--feature", default="cls+max", choices=FEATURES)
    p.add_argument("--c-grid", default=",".join(f"{c:g}" for c in C_GRID),
                   help="comma-separated SVM C values tried on the validation split")
    p.add_argument("--episodes", type=int, default=10, help="few-shot episodes per setting")
    p.add_argument("--iou-per-class", type=int, default=5, help="test shapes per class for the part IoU")
    p.add_argument("--no-part-iou", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print only; leave the cards alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train-per-class", type=int, default=0, help=argparse.SUPPRESS)  # tests: smaller synthetic sets
    p.add_argument("--test-per-class", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    for folder in args.checkpoints:
        try:
            read_card(folder)
        except CheckpointError as err:
            print(f"pcdviz eval: {err}", file=sys.stderr)
            return 1
        for variant in eval_variants(args.dataset, args.variant):
            try:
                scores, protocol = evaluate(folder, args.dataset, args.feature, args.episodes, not args.no_part_iou,
                                            args.iou_per_class, args.seed, args.device,
                                            args.train_per_class, args.test_per_class,
                                            tuple(float(c) for c in args.c_grid.split(",")),
                                            variant=variant, background=args.background, workers=args.workers)
            except DatasetError as err:
                print(f"pcdviz eval: {err}", file=sys.stderr)
                return 1
            print(format_table(f"{folder}  (C={protocol['svm_C']}, {protocol['seconds']} s)", scores), flush=True)
            print(format_locality(protocol["attention_locality"]), flush=True)
            if not args.no_write:
                write_scores(folder, scores, protocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
