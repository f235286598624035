#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECS each, 60 by default),
# starting from the regression files as a seed corpus. A crash leaves its
# input in fuzz/artifacts/<target>/; copy it into fuzz/regressions/<target>/
# and the normal suite (crates/cli/tests/fuzz_regressions.rs) keeps it fixed.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain it
# runs without a sanitizer (-s none) and with RUSTC_BOOTSTRAP=1, which
# cargo-fuzz's coverage flags need.
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECS:-60}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode verify generation_body policy)
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  mkdir -p "$corpus"
  echo "== $t for ${secs}s"
  cargo fuzz run -s none --release "$t" "$corpus" "regressions/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1
done
