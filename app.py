"""`python app.py`: the attention explorer on the bundled checkpoints in ./checkpoints (see pcdviz/app.py)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see pcdviz/cli.py

from pcdviz.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--checkpoints", str(Path(__file__).resolve().parent / "checkpoints"), *sys.argv[1:]]))
