#!/usr/bin/env bash
# The hyperparameter study of docs/hyperparameters.md: variants of the D4
# models, each changing one setting, trained on 8,000 augmented MNIST
# training images and scored on 2,000 held-out validation images (never
# the test set); the D12 Gram model's own settings the same way; then the
# feature settings of Table 1's full-scale D12 Gram model of seed 0 on its
# own 6,000 validation images. Every scored variant is kept in
# OUT/tune_<name>_rows/: a rerun scores only what is missing.
# Usage: scripts/tune_study.sh [EQAE] [OUT]   (about 2 hours on 2 cores)
set -euo pipefail
EQAE=${1:-target/release/eqae}
OUT=${2:-reports/tune}
SMALL=(--set data.train_limit=10000 --set data.validation_fraction=0.2 --set train.epochs=4)

"$EQAE" tune --quiet --out "$OUT" --config configs/d4_gram.toml "${SMALL[@]}" \
  --vary 'model.channels=[2, 4, 8, 8]' --vary 'model.channels=[6, 12, 24, 24]' \
  --vary model.latent=16 --vary model.latent=64 \
  --vary train.epochs=8 --vary train.schedule=cosine --vary train.learning_rate=0.003 \
  --vary train.batch_size=32 --vary train.batch_size=128 \
  --vary features.gram_band=0 --vary features.gram_band=4 \
  --vary 'features.gram_elements=["all"]' --vary features.autocorrelation=false

"$EQAE" tune --quiet --out "$OUT" --config configs/d4_attention.toml "${SMALL[@]}" \
  --vary train.entropy_weight=0 --vary train.entropy_weight=0.0003 --vary train.entropy_weight=0.003 \
  --vary train.entropy_weight=0.01 --vary train.entropy_weight=0.1 \
  --vary model.code=32 --vary model.code=0

"$EQAE" tune --quiet --out "$OUT" --config configs/d12_gram.toml "${SMALL[@]}" \
  --vary 'model.channels=[2, 4, 8, 8]' --vary 'model.channels=[6, 12, 24, 24]' \
  --vary model.latent=16 --vary model.latent=64 --vary model.latent=128 \
  --vary train.epochs=8 --vary train.batch_size=32

# needs Table 1's full-scale run: eqae eval --table 1 --preset full --train-only
if [ -f runs/table1-full/d12_gram-s0/model.bpk ]; then
  "$EQAE" tune --quiet --out "$OUT" --trained runs/table1-full/d12_gram-s0 --head gram \
    --vary features.gram_band=0 --vary features.gram_band=4 \
    --vary 'features.gram_elements=["all"]' --vary features.autocorrelation=false
fi
