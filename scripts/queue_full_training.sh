#!/usr/bin/env bash
# The full-scale trainings of issue 12, one after another, each resumable:
# seed 0 of Table 1 (MNIST), seed 0 of Table 3 (Fashion-MNIST, whose Gram
# models ship in models/), then seeds 1 and 2 of Table 1. Run it again after
# an interruption: every run resumes from its last checkpoint.
#
#     nohup nice -n 19 scripts/queue_full_training.sh >> runs/queue.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
eqae=${EQAE:-target/release/eqae}
"$eqae" eval --table 1 --preset full --seeds 1 --quiet --train-only
"$eqae" eval --table 3 --preset full --seeds 1 --quiet --train-only
"$eqae" eval --table 1 --preset full --seeds 3 --quiet --train-only
