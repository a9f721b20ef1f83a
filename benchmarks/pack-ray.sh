#!/usr/bin/env bash
# Packs Ray for the project's device machine, which has Python 3.12 and torch but no Ray and no
# internet, and takes at most 64 MiB along with the working tree: .gpu-ray/ray-site.tar.xz, about
# 28 MiB. On that machine: tar -xJf .gpu-ray/ray-site.tar.xz -C /tmp/site; PYTHONPATH=/tmp/site.
# Usage: benchmarks/pack-ray.sh [RAY_VERSION]   (docs/speed.md, "The GPU check")
set -euo pipefail
version="${1:-2.60.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Ray's wheel and the one requirement that machine lacks (jsonschema, with its own); the rest is there.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$work/wheels" "ray==$version" jsonschema jsonschema-specifications referencing rpds-py
mkdir "$work/site"
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
# aeframe uses Ray Core alone: the libraries, the Java jars and the dashboard's web pages are dropped,
# which takes the archive from 76 MiB to under the carry limit.
rm -rf "$work"/site/ray/{jars,rllib,data,serve,train,tune,llm,dashboard/client/build}
mkdir -p "$root/.gpu-ray"
tar -C "$work/site" -cf - . | xz -T0 -6 >"$root/.gpu-ray/ray-site.tar.xz"
ls -l "$root/.gpu-ray/ray-site.tar.xz"
