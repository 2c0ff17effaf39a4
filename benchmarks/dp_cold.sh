#!/bin/bash
# dp on zoo models from an empty tuning-record cache: the search time and
# simulations a first search costs (benchmarks/study.py --cold reads them).
#
#   benchmarks/dp_cold.sh OUTDIR TARGET MODEL...
#
# Writes OUTDIR/TARGET-MODEL-dp.json (the plan, with its stats: seconds,
# configurations, measurements) and appends to OUTDIR/TARGET.jsonl (the
# tuning records, which the study can then reuse with --cache-dir OUTDIR).
# Models run one after another, so records of repeated blocks carry over
# between models of a family: run them in the order given in RESULTS.md.
set -euo pipefail
out=$1; target=$2; shift 2
mkdir -p "$out/zoo"
for m in "$@"; do
  [ -f "$out/zoo/$m.onnx" ] || dlfusion-zoo "$m" -o "$out/zoo/$m.onnx"
  start=$(date +%s)
  dlfusion-opt "$out/zoo/$m.onnx" -o /dev/null -p \
    "fold-batchnorm,fuse-layers{strategy=dp target=$target cache=\"$out/$target.jsonl\" jobs=2 save=\"$out/$target-$m-dp.json\"}"
  echo "$target $m $(( $(date +%s) - start ))s"
done
