#!/usr/bin/env bash
# Fuzz the runbook parser and the journal decoder for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 120); targets (default: all, one after the
# other): runbook (the parser, on text), journal (a damaged journal.db and
# WAL, opened and read as history/show/report/resume read it), journal_rows
# (the enum and JSON columns' decoding), journal_render (any row values,
# rendered by show/report). Not part of .ci/run.
# FUZZ_SANITIZER=address builds with AddressSanitizer (default: none; mend's
# Rust is safe code and the bundled SQLite is not instrumented either way, so
# ASan mostly costs speed). FUZZ_JOBS=N runs N processes per target.
#
# Nightly flags: cargo-fuzz passes rustc options that only nightly accepts
# (-Zsanitizer=..., and its build of the target relies on them). Only stable
# Rust is installed, so RUSTC_BOOTSTRAP=1 makes stable rustc accept them.
#
# The corpus grows in fuzz/corpus/TARGET (not committed; seeds are in
# fuzz/seeds/TARGET, the shipped runbooks and tests/e2e/invalid/). A crash
# is saved in fuzz/artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
# Exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(runbook journal journal_rows journal_render)
fi
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Seeds: runbooks from the repository (the shipped ones and the invalid
# ones the golden tests use), a dictionary of the format's keys.
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p fuzz/corpus/"$t"
done
mkdir -p fuzz/corpus/runbook
for f in runbooks/*/*.toml tests/e2e/invalid/*.toml; do
    cp "$f" "fuzz/corpus/runbook/seed-$(echo "$f" | tr / -)"
done
{
    for t in '[runbook]' '[params]' '[params.' '[grants.' '[commands.' '[[steps]]' \
        '[steps.with]' '[rehearsal.commands.' '${' '}' ' = ' '"""' "'''" '[' ']' \
        '{' '}' ',' '\n' '"rollback"' '"stop"' '"read"' '"write"' 'std:' '.wasm' \
        '"5m"' '"256MiB"' 'true' '1e3' '-0' '0x'; do
        printf '"%s"\n' "$(printf '%s' "$t" | sed 's/\\/\\\\/g; s/"/\\"/g')"
    done
    grep -ozP '(key|required)\(\s*"\K[a-z0-9_-]+' crates/runbook/src/format.rs |
        tr '\0' '\n' | sort -u | sed 's/.*/"&"/'
} >fuzz/runbook.dict

echo "building the fuzz targets (sanitizer: $sanitizer)"
nice -n 15 cargo fuzz build -s "$sanitizer" --fuzz-dir fuzz

status=0
summary=()
for t in "${targets[@]}"; do
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -close_fd_mask=1
        -print_final_stats=1 -max_len=65536)
    if [ "$t" = runbook ]; then
        args+=(-dict=fuzz/runbook.dict)
    fi
    if [ "$jobs" -gt 1 ]; then
        args+=(-fork="$jobs" -ignore_crashes=1)
    fi
    log=fuzz/logs/$t.log
    echo "fuzzing $t for ${secs}s (log: $log)"
    before=$( (find fuzz/artifacts/"$t" -type f 2>/dev/null || true) | wc -l)
    set +e
    dirs=(fuzz/corpus/"$t")
    if [ -d fuzz/seeds/"$t" ]; then
        dirs+=(fuzz/seeds/"$t")
    fi
    # The targets that render a journal through the CLI need it linked.
    features=()
    case "$t" in journal | journal_render) features=(--features cli) ;; esac
    nice -n 15 cargo fuzz run -s "$sanitizer" --fuzz-dir fuzz "${features[@]}" "$t" \
        "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1
    rc=$?
    set -e
    after=$( (find fuzz/artifacts/"$t" -type f 2>/dev/null || true) | wc -l)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(grep -oP 'stat::number_of_executed_units:\s+\K[0-9]+' "$log" || echo '?')
    rate=$(grep -oP 'stat::average_exec_per_sec:\s+\K[0-9]+' "$log" || echo '?')
    cov=$(echo "$last" | grep -oP 'cov: \K[0-9]+' || echo '?')
    ft=$(echo "$last" | grep -oP 'ft: \K[0-9]+' || echo '?')
    corpus=$(echo "$last" | grep -oP 'corp: \K[0-9]+' || echo '?')
    crashes=$((after - before))
    line="$t: ${execs} execs, ${rate} execs/s, cov ${cov}, ft ${ft}, corpus ${corpus}, new crashes ${crashes}"
    if [ "$rc" -ne 0 ]; then
        line="$line (libFuzzer exit $rc; see $log)"
        grep -E '^(thread|==[0-9]+==|SUMMARY|panicked)' "$log" | head -5 || true
        status=1
    fi
    echo "$line"
    summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
