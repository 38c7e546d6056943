#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ over its kept corpus, then over a bounded number of new
# inputs from a fixed seed, so a run is repeatable and its time bounded. New inputs libFuzzer
# finds go to a scratch directory; a crash is saved under fuzz/artifacts/<target>/ and fails
# the run (add the input to fuzz/corpus/<target>/ once fixed: the corpus is the regression
# suite).
#
#   scripts/fuzz.sh                 # FUZZ_RUNS=20000 inputs per target
#   FUZZ_RUNS=1000000 scripts/fuzz.sh html_page
#
# Built without a sanitizer: the crate forbids unsafe code, so what the fuzzer looks for is
# panics, assertion failures and hangs, and the build stays a few minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs=${FUZZ_RUNS:-20000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(project_name accept html_page json_page config wheel_metadata)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz from crates.io"
  cargo install --locked cargo-fuzz
fi

flags=(--sanitizer none --dev)
echo "fuzz.sh: building the fuzz targets (nightly, coverage-instrumented)"
cargo +nightly fuzz build "${flags[@]}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if cargo +nightly fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -runs="$runs" -seed=1 -max_len=65536 -timeout=10 -max_total_time=300 >"$log" 2>&1; then
    echo "fuzz.sh: $target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second\(s\)' "$log" | tail -1)"
    passed=$((passed + 1))
  else
    echo "fuzz.sh: $target FAILED; the end of its log:" >&2
    tail -40 "$log" >&2
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
