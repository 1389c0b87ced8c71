#!/usr/bin/env bash
# Runs every fuzz target (or those named) for RUNS inputs each, on stable
# Rust: libFuzzer's coverage instrumentation (the `-C passes=sancov-module`
# pass), debug assertions and overflow checks, but no sanitizer, which
# needs nightly. Safe Rust needs none to find what the targets look for:
# panics, failed assertions, overflows and hangs. The seed is fixed, so a
# failure mostly repeats with the same command (timing still steers
# libFuzzer a little); the input it prints always does.
#
#   fuzz/run.sh [RUNS] [TARGET...]
#   fuzz/run.sh 1000000
#   fuzz/run.sh 50000000 otlp_traces_walk
#
# Each target starts from its seeds in fuzz/corpus/<target>/ (if any);
# what it finds is kept in a temporary folder and removed afterwards. An
# input that fails a target is kept in fuzz/artifacts/ and printed in
# Base64 (`base64 -d` gives it back): keep it as a named seed in
# fuzz/corpus/<target>/ once it is fixed. RUSTFLAGS is set here, over any
# the caller has. Exit status 1 if a target failed, 2 on bad arguments,
# cargo's if the build failed.
set -euo pipefail
runs=${1:-1000000}
# Without a number first, the comment above is the usage.
[[ $runs =~ ^[0-9]+$ ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2; }
cd "$(dirname "$0")"
shift || true
if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^loadlens-fuzz$')
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# With --target, the flags reach the targets and their dependencies, not
# build scripts or procedural macros, which must not be instrumented.
flags=(--cfg fuzzing -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cdebug-assertions -Coverflow-checks)
export RUSTFLAGS="${flags[*]}"
cargo build --release --locked --bins --target "$host"
bin=${CARGO_TARGET_DIR:-target}/$host/release
for target in "${targets[@]}"; do
    [[ -x $bin/$target ]] || { echo "no fuzz target named $target" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p artifacts
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    seeds=()
    [[ -d corpus/$target ]] && seeds=("corpus/$target")
    log=$work/$target.log
    touch "$work/$target.start"
    if ! "$bin/$target" -runs="$runs" -seed=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$target-" "$work/$target" "${seeds[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        # libFuzzer prints an input of up to 256 bytes itself; any size here.
        for input in "artifacts/$target"-*; do
            [[ -f $input && $input -nt $work/$target.start ]] || continue
            echo "fuzz/$input ($(wc -c <"$input") bytes), in Base64:" >&2
            base64 -w 0 "$input" >&2
            echo >&2
        done
        echo "fuzz target $target failed: try again with fuzz/run.sh $runs $target" >&2
        exit 1
    fi
    echo "$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log"), $(grep -o 'cov: [0-9]*' "$log" | tail -n 1) edges"
done
