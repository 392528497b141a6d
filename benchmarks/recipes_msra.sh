#!/usr/bin/env bash
# Recipes on full MSRA under one wall-clock budget each (issue 12): trains every recipe with
# `--max-minutes`, then scores the best-on-dev model on the test set. One recipe at a time —
# never run two of these (or a test suite) at once on a 2-core machine.
#
#   benchmarks/recipes_msra.sh MSRA_DIR OUT_DIR [MINUTES] [RECIPE ...]
#   RECIPE: bilstm (default recipe: chars + bigrams + BiLSTM-CRF), albert (ALBERT-tiny-CRF from
#           random init, the article's model shape), albert-bilstm (ALBERT-tiny + BiLSTM-CRF),
#           and each of them with "-pretrained": half the budget masked-LM pretraining on the
#           text of train.txt (`albert-ner pretrain`), the other half fine-tuning from it — equal
#           total compute.
#
# Each run writes OUT_DIR/RECIPE/{train.log,model/,test.json} (and pretrain.log, encoder/); a
# summary line per recipe goes to OUT_DIR/summary.tsv (recipe, minutes, steps, dev entity F1,
# test entity F1, wall seconds of both phases).
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
  case "${1%-pretrained}" in
    bilstm) echo "" ;;  # the CLI's defaults without a checkpoint
    albert) echo "--model-config tiny --lstm-units 0 --bigram-buckets 0 --bigram-size 0" ;;
    albert-bilstm) echo "--model-config tiny --lstm-units 128 --bigram-buckets 0 --bigram-size 0" ;;
    *) echo "unknown recipe $1" >&2; exit 2 ;;
  esac
}

# The encoder a pretrained recipe pretrains (the stack its fine-tuning starts from).
pretrain_options() {
  case "${1%-pretrained}" in
    bilstm) echo "--model-config chars" ;;
    *) echo "--model-config tiny" ;;
  esac
}

for recipe in "${RECIPES[@]}"; do
  dir="$OUT/$recipe"
  mkdir -p "$dir"
  started=$(date +%s)
  train_minutes=$MINUTES
  init=()
  if [[ "$recipe" == *-pretrained ]]; then
    train_minutes=$(python3 -c "print($MINUTES / 2)")
    # shellcheck disable=SC2046
    "$PYTHON" -m albert_ner.cli pretrain --text-file "$MSRA_DIR/train.txt" --output-dir "$dir/encoder" \
        --max-minutes "$train_minutes" --batch-size 64 --eval-every 1000 --log-every 200 --seed 42 \
        $(pretrain_options "$recipe") 2>&1 | tee "$dir/pretrain.log"
    init=(--init-checkpoint "$dir/encoder")
    # A few minutes of pretraining from random init is far from a downloaded checkpoint: an
    # ALBERT fine-tunes with the from-scratch learning rate, not the 5e-5 meant for those
    # (the BiLSTM stack keeps its own recipe rate by default).
    if [[ "$recipe" == albert* ]]; then init+=(--learning-rate 1e-3); fi
  fi
  # shellcheck disable=SC2046
  "$PYTHON" -m albert_ner.cli train --train-file "$MSRA_DIR/train.txt" --dev-file "$MSRA_DIR/dev.txt" \
      --output-dir "$dir/model" --max-minutes "$train_minutes" --batch-size 64 --eval-every 1000 \
      --log-every 200 --seed 42 $(recipe_options "$recipe") "${init[@]}" 2>&1 | tee "$dir/train.log"
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
