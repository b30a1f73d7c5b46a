#!/usr/bin/env bash
# The full-scale trainings of seeds 1 and 2 of Table 1 (MNIST), one model
# after another, each resumable: how docs/results/table1_full/ was made.
# Seed 0 of Tables 1 and 3 is trained, evaluated and
# kept in docs/results/ (table1_full_s0/, table3_full_s0/); the shipped Gram
# models are in models/.
#
#     nohup nice -n 19 scripts/queue_full_training.sh >> runs/queue.log 2>&1 &
#
# Run it again after an interruption: every run resumes from its last
# checkpoint. Checkpoints live in runs/ (not in git): a model whose training
# does not finish where it started is trained again elsewhere, so evaluate
# the finished ones before leaving (docs/results/table1_full/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
eqae=${EQAE:-target/release/eqae}
"$eqae" eval --table 1 --preset full --first-seed 1 --seeds 3 --quiet --train-only
