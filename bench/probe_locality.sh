#!/usr/bin/env bash
# Short locality probes (issue 19): train a few epochs of the tiny-cpu recipe with extra settings, then
# `pcdviz eval` the teacher (SVM, few-shot, part IoU, patch-to-patch locality).
#   bench/probe_locality.sh NAME EPOCHS [train args...]      -> runs/probes/NAME/{train.log,eval.log}
# The EMA teacher of a 200-step probe is still about half its initialisation (momentum 0.996): read the
# student too with `python bench/probe_state_locality.py runs/probes/NAME --student`.
# Resumable: run the same line again after an interruption. Prints the load before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; epochs=$2; shift 2
out=runs/probes/$name
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE
echo "[probe $name] start $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python -m training.train --recipe tiny-cpu --epochs "$epochs" --out "$out" "$@" > "$out/train.log" 2>&1
.venv/bin/python -m training.evaluate "$out/checkpoint" > "$out/eval.log" 2>&1
echo "[probe $name] done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg); $(grep -o 'done: .*min' "$out/train.log")"
grep -E "SVM|10-shot|corrected|local heads|argmax|layer [0-3]:" "$out/eval.log"
