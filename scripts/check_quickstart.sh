#!/usr/bin/env bash
# Quick-start check: clone this repository (its committed HEAD) into a temporary folder and, in
# a fresh virtualenv, run the README's two quick-start commands, `make demo` then `make test`;
# check that the demo wrote a non-empty heat-map video with one prediction line per frame.
# It installs everything again (minutes; pip's cache helps). tests/deploy/test_quickstart.py
# runs it when GRADCAM_CHECK_QUICKSTART=1.
#
#   scripts/check_quickstart.sh                               # make test: the unit smoke subset
#   QUICKSTART_PYTEST_ARGS="" scripts/check_quickstart.sh     # make test: the whole suite
#   KEEP=1 scripts/check_quickstart.sh                        # keep the clone afterwards
set -euo pipefail

root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d "${TMPDIR:-/tmp}/gradcam-quickstart.XXXXXX")
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work/repo"; else rm -rf "$work"; fi
}
trap cleanup EXIT

pytest_args=${QUICKSTART_PYTEST_ARGS-"-m 'not slow and not browser' tests/unit"}

# A fresh environment: nothing from a calling virtualenv or make.
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME MAKEFLAGS MFLAGS MAKELEVEL GRADCAM_URL GRADCAM_MODEL
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/\.venv/bin$' | paste -sd: -)
export PATH

# Four free ports (a developer's own server may hold 8000-8002 or 8501).
read -r grpc http metrics dashboard < <(python3 - <<'EOF'
import socket

socks = [socket.socket() for _ in range(4)]
for sock in socks:
    sock.bind(("127.0.0.1", 0))
print(*(sock.getsockname()[1] for sock in socks))
EOF
)

echo "== git clone $root (HEAD $(git -C "$root" rev-parse --short HEAD))"
git clone --quiet "$root" "$work/repo"
cd "$work/repo"

echo "== make demo"
make demo GRPC_PORT="$grpc" HTTP_PORT="$http" METRICS_PORT="$metrics" DASHBOARD_PORT="$dashboard"

echo "== the demo's outputs"
.venv/bin/python - <<'EOF'
import json
import sys
from pathlib import Path

import av

out = Path("out")
video = out / "chelsea_pan_gradcam.mp4"
predictions = out / "chelsea_pan_predictions.jsonl"
for path in (out / "chelsea_pan.mp4", video, predictions):
    if not path.is_file() or path.stat().st_size == 0:
        sys.exit(f"missing or empty: {path}")
with av.open(str(video)) as container:
    frames = sum(1 for _ in container.decode(video=0))
records = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
if frames == 0 or len(records) != frames:
    sys.exit(f"{video}: {frames} frames, {predictions}: {len(records)} lines")
print(f"{video}: {frames} frames; {predictions}: {len(records)} lines; "
      f"first frame: {records[0]['class_name']} {records[0]['score']:.2f}")
EOF

leftover=$(pgrep -f "$work/repo/model_repository" || true)
if [ -n "$leftover" ]; then
  echo "processes left running by the demo: $leftover" >&2
  exit 1
fi

echo "== make test PYTEST_ARGS=\"$pytest_args\""
make test PYTEST_ARGS="$pytest_args"

echo "quick start OK"
