#!/usr/bin/env bash
# The main job (README): installs what is missing, builds Release, runs
# gqa-bench on its default cases (attention presets + whole-layer cases,
# each checked against the float64 reference) in f32 and f16, and the
# KV cache v2 cases and accuracy table, and the conformance runner on the
# shipped golden cases (Keras and LLM). Extra arguments go to
# gqa-bench (e.g. --threads 2 --json bench.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash toolchains/setup-deps.sh --native
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j2
./build/release/gqa-bench "$@"
./build/release/gqa-bench --dtype f16 "$@"
./build/release/gqa-bench --cache --accuracy --preset D1 --preset D2 --preset D3 "$@"
if [ -d ../shared/golden ]; then
  ./build/release/gqa-conformance ../shared/golden
fi
if [ -d ../shared/golden-llm ]; then
  ./build/release/gqa-conformance ../shared/golden-llm
fi
