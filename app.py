"""`python app.py`: the attention explorer on the bundled checkpoints in ./checkpoints (see pcdviz/app.py)."""

import sys
from pathlib import Path

from pcdviz.app import main

if __name__ == "__main__":
    sys.exit(main(["--checkpoints", str(Path(__file__).resolve().parent / "checkpoints"), *sys.argv[1:]]))
