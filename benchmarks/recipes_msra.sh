#!/usr/bin/env bash
# Recipes on full MSRA under one wall-clock budget each (issue 12): trains every recipe with
# `--max-minutes`, then scores the best-on-dev model on the test set. One recipe at a time —
# never run two of these (or a test suite) at once on a 2-core machine.
#
#   benchmarks/recipes_msra.sh MSRA_DIR OUT_DIR [MINUTES] [RECIPE ...]
#   RECIPE: bilstm (default recipe: chars + bigrams + BiLSTM-CRF), albert (ALBERT-tiny-CRF from
#           random init, the article's model shape), albert-bilstm (ALBERT-tiny + BiLSTM-CRF)
#
# Each run writes OUT_DIR/RECIPE/{train.log,model/,test.json}; a summary line per recipe goes
# to OUT_DIR/summary.tsv (recipe, minutes, steps, dev entity F1, test entity F1, wall seconds).
set -euo pipefail
MSRA_DIR=${1:?usage: recipes_msra.sh MSRA_DIR OUT_DIR [MINUTES] [RECIPE ...]}
OUT=${2:?usage: recipes_msra.sh MSRA_DIR OUT_DIR [MINUTES] [RECIPE ...]}
MINUTES=${3:-20}
shift $(( $# >= 3 ? 3 : $# ))
RECIPES=("$@")
[ ${#RECIPES[@]} -eq 0 ] && RECIPES=(bilstm albert albert-bilstm)
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"

recipe_options() {
  case "$1" in
    bilstm) echo "" ;;  # the CLI's defaults without a checkpoint
    albert) echo "--model-config tiny --lstm-units 0 --bigram-buckets 0 --bigram-size 0 --precision bf16" ;;
    albert-bilstm) echo "--model-config tiny --lstm-units 128 --bigram-buckets 0 --bigram-size 0 --precision bf16" ;;
    *) echo "unknown recipe $1" >&2; exit 2 ;;
  esac
}

for recipe in "${RECIPES[@]}"; do
  dir="$OUT/$recipe"
  mkdir -p "$dir"
  started=$(date +%s)
  # shellcheck disable=SC2046
  "$PYTHON" -m albert_ner.cli train --train-file "$MSRA_DIR/train.txt" --dev-file "$MSRA_DIR/dev.txt" \
      --output-dir "$dir/model" --max-minutes "$MINUTES" --batch-size 64 --eval-every 1000 \
      --log-every 200 --seed 42 $(recipe_options "$recipe") 2>&1 | tee "$dir/train.log"
  wall=$(( $(date +%s) - started ))
  "$PYTHON" -m albert_ner.cli evaluate --model-dir "$dir/model" --data-file "$MSRA_DIR/test.txt" --json > "$dir/test.json"
  "$PYTHON" - "$recipe" "$MINUTES" "$dir" "$wall" >> "$OUT/summary.tsv" <<'EOF'
import json, sys
recipe, minutes, directory, wall = sys.argv[1:]
final = json.load(open(f"{directory}/model/final_metrics.json"))
test = json.load(open(f"{directory}/test.json"))
print(f"{recipe}\t{minutes}\t{final['step']}\t{final['best_entity_f1']:.4f}\t{test['entity_f1']:.4f}\t{wall}")
EOF
  tail -1 "$OUT/summary.tsv"
done
