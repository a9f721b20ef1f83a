#!/usr/bin/env bash
# The GPU check in one command: tests that need CUDA, the speed benchmarks and the study's full
# protocol, into one JSON file. Options and the device machine's command: gpu-check.sh --help,
# and docs/speed.md ("The GPU check").
# The interpreter: $PYTHON, else the repository's .venv, else python3 on PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$here/../.venv/bin/python" ]; then python="$here/../.venv/bin/python"; else python="python3"; fi
fi
exec "$python" "$here/gpu_check.py" "$@"
