#!/usr/bin/env bash
# Benchmark: ALBERT-tiny (albert_zh tiny shape) + CRF from random init on the full MSRA
# training set, dev for model selection, then entity-level F1 on test.txt.
# Usage: benchmarks/train_msra_tiny.sh [MSRA_DIR] [OUT_DIR]
# Precision is `auto`: mixed bf16 on a CPU with AVX512-BF16/AMX-BF16 (the machine BENCHMARKS.md
# measured, 1.47x faster per step) or an Ampere+ GPU, fp16 on a 7.x GPU, fp32 otherwise (bf16
# without those instructions is about 2x slower); train.log's `precision:` line says which.
# Writes OUT_DIR/{train.log,metrics.jsonl,test_scores.json,test_report.txt,summary.json}.
set -euo pipefail
MSRA_DIR=${1:-${MSRA_DIR:-../shared/data/msra}}
OUT=${2:-benchmarks/results/msra_tiny}
PY=${PYTHON:-python}
EPOCHS=${EPOCHS:-7}
mkdir -p "$OUT"
start=$(date +%s)
$PY -m albert_ner.cli train \
  --train-file "$MSRA_DIR/train.txt" --dev-file "$MSRA_DIR/dev.txt" \
  --output-dir "$OUT/model" --model-config tiny --precision auto \
  --epochs "$EPOCHS" --batch-size 32 --max-seq-length 128 --learning-rate 1e-3 \
  --eval-every 1000 --log-every 200 --seed 42 2>&1 | grep --line-buffered -v '^[WIE]0000' | tee "$OUT/train.log"
trained=$(date +%s)
$PY -m albert_ner.cli evaluate --model-dir "$OUT/model" --data-file "$MSRA_DIR/test.txt" --json > "$OUT/test_scores.json"
$PY -m albert_ner.cli evaluate --model-dir "$OUT/model" --data-file "$MSRA_DIR/test.txt" > "$OUT/test_report.txt" 2>/dev/null
done_at=$(date +%s)
cp "$OUT/model/metrics.jsonl" "$OUT/metrics.jsonl"
$PY - "$OUT" "$start" "$trained" "$done_at" <<'PY'
import json, platform, os, sys
out, start, trained, done = sys.argv[1], *map(int, sys.argv[2:])
scores = json.load(open(f"{out}/test_scores.json"))
summary = {
    "test_entity_f1": scores["entity_f1"], "test_entity_precision": scores["entity_precision"],
    "test_entity_recall": scores["entity_recall"], "test_eval_f": scores["eval_f"],
    "train_wall_seconds": trained - start, "test_eval_seconds": done - trained,
    "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
