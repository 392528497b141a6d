#!/usr/bin/env bash
# Builds the virtual environment of the PEER tools that benchmarks/train_step_vs_hf.py and
# benchmarks/inference_vs_peers.py compare this project against. The peers never enter the
# project's own dependencies: they live only in this venv.
#
#   benchmarks/peers/make_venv.sh [VENV_DIR]      # default: benchmarks/.venv-peers
#
# Idempotent: when VENV_DIR already holds the packages of PEER_PACKAGES below (checked by a
# stamp file and an import test) it does nothing. Delete VENV_DIR to rebuild.
#
# torch is pinned to 2.13.0 on purpose: a CPU build of that version is on this machine's disk
# and pip's configuration finds it. An unpinned `torch` (or another version) would download
# the multi-GB CUDA build from the index.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/benchmarks/.venv-peers}"
python_bin="${PYTHON:-python3.11}"

TORCH="torch==2.13.0"
# The versions the benchmark was written against; recorded again in every result JSON.
PEER_PACKAGES=(
  "transformers==5.24.0"   # same major as the project's dev extra (numeric reference tests)
  "pytorch-crf==0.7.2"     # imports as `torchcrf`
  "jiagu==0.2.3"           # word-level perceptron NER (FACTS.md: Peers on the MSRA test set)
  "chinesener==0.1"        # PyPI name of ChineseNER 0.1, a BiLSTM-CRF trained on MSRA train
  "psutil"
  "numpy"
)
IMPORTS="import torch, transformers, torchcrf, jiagu, ChineseNER, psutil, numpy"
stamp="$venv/.peers-stamp"
wanted="$TORCH ${PEER_PACKAGES[*]}"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
   && "$venv/bin/python" -c "$IMPORTS" 2>/dev/null; then
  echo "peer venv $venv is up to date"
  exit 0
fi

if ! command -v "$python_bin" >/dev/null; then
  echo "error: $python_bin not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

echo "building peer venv in $venv"
"$python_bin" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)
# torch first and alone, so that nothing later can make pip choose another build.
"${pip[@]}" "$TORCH"
# torch repeated in the same command: the resolver may not move it to satisfy a peer.
"${pip[@]}" "$TORCH" "${PEER_PACKAGES[@]}"

version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
if [[ "$version" != 2.13.0* ]]; then
  echo "error: the peer venv got torch $version, expected 2.13.0 (the CPU build)" >&2
  exit 1
fi
"$venv/bin/python" -c "$IMPORTS"
echo "$wanted" > "$stamp"
echo "peer venv ready: $venv (torch $version)"
