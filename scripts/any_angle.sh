#!/usr/bin/env bash
# Invariance over the whole circle, for trained runs: the feature change
# `eqae check --angles` and the probes' rotation-robustness curve
# `eqae eval --rotations`, both in steps of STEP degrees, with the test
# images turned by each resampling named, into OUT/<run>_<resampling>/.
#
#   scripts/any_angle.sh OUT STEP "fourier bilinear" RUN...
#
# e.g. scripts/any_angle.sh reports/any_angle 5 fourier models/mnist_d12_gram
# Environment: EQAE (the binary; default target/release/eqae), IMAGES
# (upright test images turned at each angle; default 2000), HEAD (the head
# evaluated by the probes; default gram).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { echo "usage: scripts/any_angle.sh OUT STEP \"RESAMPLINGS\" RUN..." >&2; exit 2; }
out=$1 step=$2 resamplings=$3
shift 3
eqae=${EQAE:-target/release/eqae}
images=${IMAGES:-2000}
head=${HEAD:-gram}
for run in "$@"; do
    for r in $resamplings; do
        dir="$out/$(basename "$run")_$r"
        mkdir -p "$dir"
        echo "== $run, test images turned by $r resampling -> $dir" >&2
        "$eqae" check --run "$run" --angles "$step" --angle-images "$images" --resample "$r" --out "$dir" >"$dir/check.txt"
        "$eqae" eval --run "$run" --head "$head" --rotations "$step" --rotation-images "$images" \
            --resample "$r" --quiet --out "$dir" >"$dir/eval.txt"
    done
done
