"""Head statistics of a checkpoint: per layer and head, averaged over a fixed set of clouds.

What the ViT paper's attention-distance figure shows for images, for point clouds: each head's mean attention
distance (attention-weighted distance between query and key patch centres, in units of the normalised cloud),
its distance ratio (1 = no preference for near patches), the entropy of its patch queries' attention, its
query-argmax share (1 = one map whatever the query), and for part-labelled shapes its part alignment (the
chance-corrected part IoU of its CLS map, or of the mean attention received without a CLS token).

The explorer shows them (`head_stats_figure`); `pcdviz eval` writes them into the model card.
"""
from __future__ import annotations

import numpy as np

from pcdviz.attention import attention_locality, maps_from_model_batch

STAT_NAMES = {  # key -> (axis title, what 1.0 or the ends mean)
    "mean_distance": "mean attention distance (unit-sphere cloud)",
    "distance_ratio": "distance / uniform (1 = no locality)",
    "entropy": "attention entropy (nats; ln G = uniform)",
    "argmax_share": "query-argmax share (1 = one map for every query)",
    "part_iou": "part alignment (chance-corrected IoU)",
}


def synthetic_probe_set(n_points: int = 1024, per_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The fixed set: the first `per_class` test shapes of every synthetic category, (S, n, 3) and labels (S, n)."""
    from pcdviz.data.synthetic import CATEGORIES, make_shape, shape_seeds

    shapes = [make_shape(c, int(seed), n_points) for c in CATEGORIES for seed in shape_seeds("test", per_class)]
    return (np.stack([s.points for s in shapes]).astype(np.float32), np.stack([s.labels for s in shapes]))


def head_statistics(model, clouds: np.ndarray, labels: np.ndarray | None = None, batch: int = 8) -> dict:
    """{stat: (L, H) mean over the clouds} for clouds (S, N, 3) at the model's input size; part_iou with labels."""
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(clouds), batch):
        maps = maps_from_model_batch(model, clouds[start:start + batch])
        for i, m in enumerate(maps):
            stats = attention_locality(m)
            if labels is not None:
                lab = labels[start + i]
                stats["part_iou"] = np.stack([m.head_part_iou(lab, layer).corrected for layer in range(m.n_layers)])
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + np.asarray(v, dtype=np.float64)
    return {k: v / len(clouds) for k, v in sums.items()}


def as_card(stats: dict, n_clouds: int, about: str) -> dict:
    """The statistics as a model-card entry: rounded (L, H) lists, what they were averaged over."""
    return {"n_clouds": n_clouds, "about": about,
            **{k: np.round(np.asarray(v), 4).tolist() for k, v in stats.items()}}


def head_stats_figure(stats_by_checkpoint: dict[str, dict], keys=("mean_distance", "entropy", "part_iou")):
    """One row of plots per statistic: x = layer, one dot per head, one colour per checkpoint (the ViT figure)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = [k for k in keys if any(k in s for s in stats_by_checkpoint.values())]
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[STAT_NAMES[k] for k in keys],
                        horizontal_spacing=0.08)
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    for c, (name, stats) in enumerate(stats_by_checkpoint.items()):
        for j, key in enumerate(keys):
            if key not in stats:
                continue
            v = np.asarray(stats[key])  # (L, H)
            L, H = v.shape
            jitter = (np.arange(H) - (H - 1) / 2) * 0.06 + (c - (len(stats_by_checkpoint) - 1) / 2) * 0.25
            x = (np.arange(L)[:, None] + jitter[None, :]).ravel()
            fig.add_trace(go.Scatter(x=x, y=v.ravel(), mode="markers", name=name, legendgroup=name,
                                     showlegend=j == 0, marker=dict(size=7, color=palette[c % len(palette)]),
                                     customdata=np.stack(np.meshgrid(np.arange(L), np.arange(H), indexing="ij"),
                                                         -1).reshape(-1, 2),
                                     hovertemplate=f"{name}<br>layer %{{customdata[0]}} head %{{customdata[1]}}"
                                                   f"<br>%{{y:.3f}}<extra></extra>"), row=1, col=j + 1)
            fig.update_xaxes(title_text="layer", dtick=1, row=1, col=j + 1)
    fig.update_layout(height=320, margin=dict(l=40, r=10, t=40, b=40), template="plotly_white",
                      legend=dict(orientation="h", y=-0.25))
    return fig
