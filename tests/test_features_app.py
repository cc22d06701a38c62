"""The feature, head-statistics and snapshot sections of the launched app, through gradio_client."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    from pcdviz.explorer import Explorer
    from pcdviz.headless import served

    root = tmp_path_factory.mktemp("ckpts")
    for name in ("dwc-tiny", "random-tiny"):
        shutil.copytree(REPO / "checkpoints" / name, root / name)
    with served(Explorer(root)) as url:
        yield Client(url, verbose=False, download_files=False)


def _n_scenes(plot) -> int:
    import json

    fig = json.loads(plot["plot"]) if isinstance(plot, dict) and "plot" in plot else plot
    return len([k for k in fig["layout"] if k.startswith("scene")])


def test_features_beside_other_clouds_and_head_statistics(client):
    chair, *_ = client.predict(category="chair", seed=0, api_name="/load_shape")
    bench, *_ = client.predict(category="bench", seed=0, api_name="/load_shape")
    seen = client.predict(cloud_id=chair, api_name="/clouds_seen")
    assert bench in [v for _, v in seen["choices"]] and chair not in [v for _, v in seen["choices"]]
    plot, status = client.predict(cloud_id=chair, checkpoint="dwc-tiny", feat_mode="pca", others=[bench],
                                  api_name="/features")
    assert "fitted on 2 clouds" in status and _n_scenes(plot) == 2
    plot, status = client.predict(cloud_id=chair, checkpoint="dwc-tiny", feat_mode="similarity", others=[bench],
                                  query=3, api_name="/features")
    assert "similarity of patch tokens to patch 3" in status and _n_scenes(plot) == 2
    plot, table = client.predict(checkpoint="dwc-tiny", compare=["random-tiny"], api_name="/head_stats")
    assert "| dwc-tiny | 0 |" in table and "| random-tiny | 3 |" in table
    _, msg = client.predict(checkpoint="random-tiny", api_name="/snapshots")
    assert "no snapshots" in msg
    plot, status = client.predict(index=0, cloud_id=chair, checkpoint="random-tiny", api_name="/snapshot_view")
    assert "**random-tiny**" in status and _n_scenes(plot) == 1


def test_the_shipped_dwc_tiny_steps_through_its_training_snapshots(client):
    """dwc-tiny ships 4 teacher snapshots (issue 17): the slider lists them and each draws its own maps."""
    chair, *_ = client.predict(category="chair", seed=0, api_name="/load_shape")
    slider, msg = client.predict(checkpoint="dwc-tiny", api_name="/snapshots")
    assert "4 snapshots and the final checkpoint" in msg
    titles, plots = [], []
    for index in range(5):
        plot, status = client.predict(index=index, cloud_id=chair, checkpoint="dwc-tiny", api_name="/snapshot_view")
        assert _n_scenes(plot) == 1
        titles.append(status.split(" · ")[0])
        plots.append(plot["plot"] if isinstance(plot, dict) else str(plot))
    assert len(set(plots)) == 5                                           # five models, five pictures
    assert titles == ["**dwc-tiny@step-0**", "**dwc-tiny@step-375**", "**dwc-tiny@step-750**",
                      "**dwc-tiny@step-1125**", "**dwc-tiny**"]
