#!/usr/bin/env bash
# Peak resident memory (VmHWM, from the kernel's rusage) of the mend host
# process while a hostile step hands it huge values: the figures behind the
# bounds in docs/08-promises.md. Each case is one `mend run` of the `flood`
# test guest (tests/guests/flood) on a scratch fixture.
#
#   scripts/measure-host-memory.sh            # uses target/release/mend
#   MEND=target/debug/mend scripts/measure-host-memory.sh
#   WALK_FILES=1000000 scripts/measure-host-memory.sh
#
# Needs the guests built (any cargo build of the engine builds them) and
# /usr/bin/time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mend=${MEND:-$root/target/release/mend}
guest=$root/target/guests/wasm32-wasip2/guest/guest_flood.wasm
walk_files=${WALK_FILES:-300000}
[ -x "$mend" ] || { echo "no $mend: cargo build --release -p mend" >&2; exit 2; }
[ -f "$guest" ] || { echo "no $guest: build the engine first" >&2; exit 2; }
sha=$(sha256sum "$guest" | cut -d' ' -f1)
work=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/flat" "$work/cache"

echo "making a flat directory of $walk_files files to walk..." >&2
python3 - "$work/data/flat" "$walk_files" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.close(os.open(f"{d}/f{i:08d}", os.O_CREAT | os.O_WRONLY, 0o644))
PY

# measure NAME WITH MEMORY: one run; prints the case, exit code, peak RSS.
measure() {
    local name=$1 with=$2 memory=$3 n
    n=$(( ++case_no ))
    cat > "$work/$n.toml" <<TOML
[runbook]
name = "measure-$n"
version = "1.0.0"
summary = "memory of the host: $name"

[grants.data]
path = "$work/data"
access = "read"

[[steps]]
id = "flood"
uses = "$guest"
sha256 = "$sha"
grants = ["data"]
memory = "$memory"
timeout = "10m"
with = $with
TOML
    local code=0
    /usr/bin/time -f "%M %e" -o "$work/time" \
        "$mend" --state-dir "$work/state-$n" --cache-dir "$work/cache" \
        run "$work/$n.toml" > "$work/$n.out" 2> "$work/$n.err" || code=$?
    # The last line: "Command exited with ..." comes first when it failed.
    read -r kb secs < <(tail -1 "$work/time")
    local said
    said=$(grep -Eo 'more bytes of log dropped|walked [0-9]+ entries|is [0-9,]+ bytes long|probe with [0-9]+ arguments[^"]*|stat of a [0-9]+ MiB path: [0-9]+ bytes of error|logged [0-9]+ MiB[a-z ]*|killed at its deadline|stopped at its limit' "$work/$n.out" "$work/$n.err" | head -1 | sed 's/^[^:]*://') || true
    [ "$code" = 0 ] || said="$said $(grep -h -m1 -E "error|failed|killed|stopped" "$work/$n.out" "$work/$n.err" | head -c 200)"
    printf '%-44s exit %-2s %8.1f MiB peak RSS %7.1f s  %s\n' "$name" "$code" "$(echo "$kb/1024" | bc -l)" "$secs" "$said"
}

case_no=0
# The first run compiles the guest into the cache: not counted.
measure warm-up '{ how = "log", mib = 0 }' 256MiB > /dev/null
echo "mend host peak RSS per case ($(basename "$mend"), $(nproc) cores)"
measure "baseline (log 0 bytes)" '{ how = "log", mib = 0 }' 256MiB
measure "one 50 MiB log message of ESC bytes" '{ how = "log", mib = 50, fill = "\u001b" }' 512MiB
measure "4 GiB of log in 65,536 calls" '{ how = "flood", mib = 4096 }' 256MiB
measure "probe with a 10,000,000-element list" '{ how = "list", n = 10000000 }' 1GiB
measure "stat of a 100 MiB path" '{ how = "path", mib = 100 }' 1GiB
measure "a 50 MiB plan summary line of ESC bytes" '{ how = "summary", mib = 50, fill = "\u001b" }' 512MiB
measure "walk of a flat dir of $walk_files files" '{ how = "walk", path = "data/flat" }' 256MiB
