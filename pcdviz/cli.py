"""`pcdviz app | train | eval | init | convert | export | bench`: one entry point, each subcommand a thin dispatch.

Each subcommand's own module parses its arguments, so `pcdviz train --help` shows the trainer's options.
`train` and `eval` live in the top-level `training` package (pcdviz never imports it otherwise).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# OpenMP threads that spin while waiting make torch crawl when another process holds a core (a tiny
# forward pass measured 502 ms instead of 12 ms on a busy 2-core machine). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

USAGE = """usage: pcdviz <command> [options]

commands:
  app      open the attention explorer in a browser (pcdviz app --checkpoints DIR --host H --port P)
  train    self-supervised pre-training (pcdviz train --recipe tiny-cpu --out runs/NAME)
  eval     linear SVM, few-shot and attention-part scores of a checkpoint (pcdviz eval CHECKPOINT)
  init     write a random-initialised checkpoint (pcdviz init --preset tiny --out DIR)
  convert  a Point-MAE, ACT, Point-BERT or POS-BERT checkpoint -> a pcdviz folder (pcdviz convert FILE --out DIR)
  export   attention maps of one file as .npz/.ply/.html (pcdviz export CHECKPOINT FILE --out PATH)
  bench    run every benchmark in bench/ and print their tables

`pcdviz <command> --help` shows a command's options."""


def _training_main(name: str):
    try:
        module = __import__(f"training.{name}", fromlist=["main"])
    except ImportError as e:
        raise SystemExit(f"pcdviz: the training package is not importable ({e}); run from a checkout installed with scripts/setup.sh")
    return module.main


def _bench(argv: list[str]) -> int:
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    scripts = sorted(bench_dir.glob("bench_*.py"))
    if not scripts:
        print(f"pcdviz: no benchmarks found in {bench_dir} (they ship with a source checkout)", file=sys.stderr)
        return 1
    status = 0
    for script in scripts:
        print(f"\n## {script.name}", flush=True)
        status |= subprocess.call([sys.executable, str(script), *argv])
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "app":
        from pcdviz.app import main as app_main
        return app_main(rest) or 0
    if command == "train":
        return _training_main("train")(rest) or 0
    if command == "eval":
        return _training_main("evaluate")(rest) or 0
    if command == "init":
        from pcdviz.checkpoints import init_main
        return init_main(rest) or 0
    if command == "convert":
        from pcdviz.convert import main as convert_main
        return convert_main(rest) or 0
    if command == "export":
        from pcdviz.export import main as export_main
        return export_main(rest) or 0
    if command == "bench":
        return _bench(rest)
    print(f"pcdviz: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
