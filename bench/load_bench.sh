#!/usr/bin/env bash
# Load benchmark (docs/benchmarks.md, "Load: 200 watchers and a stream of submissions"):
# builds release, then runs the ebm-e2e example `load` (tests/examples/load.rs) against a real
# release `ebm-server` child process, once on SQLite (a file in a temporary directory) and once
# on Postgres (a fresh database created on DATABASE_URL's server and dropped afterwards; that
# run is skipped when DATABASE_URL is unset), and prints one Markdown table. Each run's
# details (stderr of the example) go to $OUT/load_<store>.log.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bench/load_bench.sh [example flags]
#   (env: OUT, STORES; example flags e.g. --watchers 200 --submissions 300 --rate 5 --idle 100)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
STORES=${STORES:-sqlite postgres}
mkdir -p "$OUT"
cargo build -q --release -p ebm-server --bin ebm-server
cargo build -q --release -p ebm-e2e --example load
bin=${CARGO_TARGET_DIR:-target}/release/examples/load

rows=()
status=0
for store in $STORES; do
  if [ "$store" = postgres ] && [ -z "${DATABASE_URL:-}" ]; then
    echo "skipping postgres: DATABASE_URL is not set" >&2
    continue
  fi
  echo "== $store ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if row=$("$bin" --store "$store" "$@" 2> >(tee "$OUT/load_$store.log" >&2)); then :; else
    status=1
  fi
  rows+=("$row")
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo
echo "Machine: $(nproc) CPUs ($cpu), $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)."
echo
echo "| store | idle: submit->running p50 / p99 ms | idle + watchers: p50 / p99 ms | under load: p50 / p99 ms | under load, claim (server times) p50 / p99 ms | ListJobs p50 / p99 ms | streams dropped | server RSS peak / end | highest 1-min load avg |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $status
