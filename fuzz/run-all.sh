#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 30) seconds each, and fails if any of them
# finds a crash (a panic is an invariant broken), a timeout or a memory blow-up. Needs a nightly
# toolchain; without one it says so and succeeds (`cargo test` still replays the corpora).
#
#   FUZZ_SECONDS=180 fuzz/run-all.sh                  # every target, 3 minutes each
#   FUZZ_SECONDS=60 fuzz/run-all.sh cri_log config    # some targets
#   FUZZ_SANITIZER=none fuzz/run-all.sh               # without AddressSanitizer
#
# New inputs the fuzzer finds go to a scratch directory, not into fuzz/corpus/; a crash is
# written to fuzz/artifacts/<target>/ (minimise it with `cargo +nightly fuzz tmin` and add it
# to the corpus with the fix).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain, fuzzing skipped (the corpora replay in cargo test)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$SECONDS
cargo +nightly fuzz build --sanitizer "$sanitizer"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for ${seconds} s"
    # The first corpus directory receives new inputs; the committed one is only read.
    if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>"$scratch/$target.log"; then
        failed+=("$target")
        tail -n 60 "$scratch/$target.log" >&2
    fi
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units' "$scratch/$target.log" || true
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each without a crash"
