#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test, including the rendering tests, which run
# under Xvfb with Mesa's software Vulkan. Benchmarks are compiled (not run): `cargo bench` runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-debian.sh
# Benchmarks are built in the dev profile, which shares every dependency with the test build below.
cargo build --workspace --benches
xvfb-run -a -s "-screen 0 1280x800x24" cargo test --workspace --lib --bins --tests --examples
cargo test --workspace --doc
