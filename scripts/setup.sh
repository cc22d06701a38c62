#!/usr/bin/env bash
# Idempotent set-up: system packages (when root), a local .venv, the CPU build of torch, pcdviz.
# A second run with nothing changed takes about a second and reinstalls nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PCDVIZ_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${PCDVIZ_TORCH:-torch==2.13.0}   # the CPU wheel on these machines; set PCDVIZ_TORCH for CUDA
WITH_BROWSER=0
[ "${1:-}" = "--test" ] && WITH_BROWSER=1

need_apt=()
# open3d's wheel links against libusb-1.0 (Debian package libusb-1.0-0).
# (grep without -q: -q exits at the first match and, under pipefail, ldconfig's SIGPIPE reads as 'missing')
ldconfig -p 2>/dev/null | grep 'libusb-1.0.so' >/dev/null || need_apt+=(libusb-1.0-0)
# The browser tests drive Debian's chromium (playwright's own browser download is not reachable).
if [ "$WITH_BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[setup] missing Debian packages: ${need_apt[*]} (run: sudo apt-get install ${need_apt[*]})." >&2
    echo "[setup] without libusb-1.0-0 only open3d is unavailable (.glb/.gltf meshes); without chromium the browser tests skip." >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"

# Reinstall only when pyproject.toml, this script or the torch choice changed.
stamp="$VENV/.pcdviz-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$PY" -m pip install -q --upgrade pip >/dev/null
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  "$PY" -m pip install -q "$TORCH_SPEC"
fi
echo "[setup] installing pcdviz and its dependencies"
"$PY" -m pip install -q -e ".[test]"
echo "$want" > "$stamp"
"$PY" -c "import torch, gradio, pcdviz; print(f'[setup] ok: pcdviz {pcdviz.__version__}, torch {torch.__version__}, gradio {gradio.__version__}, python in $VENV')"
