#!/usr/bin/env bash
# The test suite, on a fresh machine as on CI: prepares what the tests need,
# then runs cargo's tests. Some tests are checked by Python clients: numpy
# reads `eqae embed`'s .npy files, and ONNX Runtime and onnx run and check
# `eqae export`'s files, and faiss-cpu loads embedded shards by the recipe
# of scripts/faiss_load.py. When the system Python lacks them, they are
# installed into a virtual environment under target/ (not system-wide).
# The kill tests stop eqae at chosen system calls with strace, and the map
# test opens a page in headless Chromium (Debian's packages, installed when
# missing and run as root).
#
#   scripts/test.sh [--quick] [extra cargo test arguments]
#
# --quick leaves out the one test that takes most of the time (120 kills of
# embed and eval at random moments, 7 of the suite's 8 minutes on 2 cores;
# docs/tests.md); CI runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${EQAE_PYTHON:-python3}
needs="import numpy, onnx, onnxruntime, PIL, faiss"
if ! "$python" -c "$needs" 2>/dev/null; then
    venv=target/pyenv
    if ! "$venv/bin/python" -c "$needs" 2>/dev/null; then
        echo "test.sh: numpy, onnx, onnxruntime, Pillow or faiss-cpu not found; installing them into $venv" >&2
        command -v python3 >/dev/null || { echo "error: python3 is needed by the tests (apt-get install python3)" >&2; exit 1; }
        mkdir -p target
        if ! python3 -m venv "$venv" 2>/dev/null; then
            # Debian's python3 without the venv module
            rm -rf "$venv"
            if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
                apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
            fi
            python3 -m venv "$venv"
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy onnx onnxruntime pillow faiss-cpu
    fi
    python=$PWD/$venv/bin/python
fi
export EQAE_PYTHON=$python

# Debian's packages the tests drive: strace (kills at chosen system calls)
# and Chromium (the map page, opened headless)
missing=()
command -v strace >/dev/null || missing+=(strace)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "test.sh: ${missing[*]} not found; installing" >&2
        apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
    else
        echo "error: the tests need ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

skip=()
if [ "${1:-}" = "--quick" ]; then
    shift
    skip=(-- --skip embed_and_eval_killed_at_random_moments_leave_whole_outputs)
fi
cargo test --release "$@" "${skip[@]}"
