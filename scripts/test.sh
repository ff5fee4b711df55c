#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test, including the rendering tests, which run
# under Xvfb with Mesa's software Vulkan. Benchmarks run once each in quick mode (a few iterations,
# debug build) so one that panics is caught; `cargo bench` runs them for their numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-debian.sh
# A fresh clone gains nothing from incremental compilation, and its caches for the two dozen
# binaries that link Bevy take gigabytes of disk. Without them a fresh build fills 5.3 GB of target/.
export CARGO_INCREMENTAL=0
echo "disk free before the build: $(df -h --output=avail . | tail -1 | tr -d ' ')"
# Benchmarks are built in the dev profile, which shares every dependency with the test build below,
# and run once each with a few iterations (NACRE_BENCH_QUICK, benches/common/quick.rs).
NACRE_BENCH_QUICK=1 cargo test --workspace --bench '*' --features bevy_nacre/cli
xvfb-run -a -s "-screen 0 1280x800x24" cargo test --workspace --lib --bins --tests --examples --features bevy_nacre/cli
cargo test --workspace --doc
echo "disk used by target/: $(du -sh "${CARGO_TARGET_DIR:-target}" | cut -f1)"
