#!/usr/bin/env bash
# The main job: sets up a fresh Debian machine and plays the default world in a window.
# Extra arguments go to the example, e.g. `bash scripts/play.sh --model path/to/model`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-debian.sh
cargo run --release --example wander -- "$@"
