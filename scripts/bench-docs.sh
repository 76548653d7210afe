#!/usr/bin/env bash
# Packed documents and sliding windows through the ring (issue 17). For P in WORLDS: N tokens of
# packed documents with long-tailed lengths (Pareto α = 1.2, at least 16 tokens, seed SEED;
# the lengths are written to OUT/docs.txt), causal, H heads of dimension D, with the layouts
# contiguous / striped / zigzag / docs (whole documents balanced by cost, long ones split) / auto;
# the same with --window 4096; and the unpacked
# equivalent: each document alone on the same P ranks (documents shorter than P are skipped
# and named), summed. Every report goes to OUT/results.jsonl (one JSON line each, with a
# "bench" field), then a table of wall, imbalance and ring bytes.
#
# Usage: bash scripts/bench-docs.sh [--out DIR] [--seq N] [--seed S] [--heads H] [--head-dim D]
#                                   [--worlds "2 4"] [--window W]
# Defaults: --out bench-docs --seq 65536 --seed 17 --heads 8 --head-dim 128 --worlds "2 4"
#           --window 4096. A quick check: RINGATTN_BIN=target/debug/ringattn bash scripts/bench-docs.sh
#           --out /tmp/bd --seq 2048 --heads 2 --head-dim 32 --worlds 2 --window 256
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-docs seq=65536 seed=17 heads=8 dim=128 worlds="2 4" window=4096
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --head-dim) dim=$2; shift 2 ;;
    --worlds) worlds=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    *) echo "bench-docs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
# RINGATTN_BIN names another binary (e.g. a debug build for a quick check); else a release build.
bin=${RINGATTN_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p ringattn-cli
  bin=target/release/ringattn
fi
mkdir -p "$out"
docs="$out/docs.txt"
python3 - "$seq" "$seed" > "$docs" <<'PY'
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
lens, left = [], n
while left > 0:
    l = max(16, int(16 * rng.paretovariate(1.2)))
    l = min(l, left)
    lens.append(l)
    left -= l
print("\n".join(map(str, lens)))
PY
results="$out/results.jsonl"
: > "$results"
run() { # TAG ARGS...: one run, its report tagged and appended
  local tag=$1; shift
  "$bin" run --heads "$heads" --head-dim "$dim" --causal --json - "$@" \
    | sed "s/^{/{\"bench\":\"$tag\",/" >> "$results"
}
for p in $worlds; do
  for w in none "$window"; do
    wargs=()
    [ "$w" = none ] || wargs=(--window "$w")
    for layout in contiguous striped zigzag docs auto; do
      run "packed P=$p window=$w layout=$layout" --workers "$p" --seq "$seq" \
        --layout "$layout" --docs-file "$docs" "${wargs[@]}"
    done
    while read -r len; do
      if [ "$len" -lt "$p" ]; then
        echo "skipped alone: a document of $len tokens on $p ranks" >&2
        continue
      fi
      run "alone P=$p window=$w len=$len" --workers "$p" --seq "$len" --layout auto "${wargs[@]}"
    done < "$docs"
  done
done
python3 - "$results" "$docs" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
lens = [int(l) for l in open(sys.argv[2])]
print(f"documents: {len(lens)} (min {min(lens)}, median {sorted(lens)[(len(lens)-1)//2]}, max {max(lens)})")
print("| P | window | run | layout | wall s | imbalance | ring bytes |")
print("|---|---|---|---|---|---|---|")
groups = {}
for r in rows:
    kind, p, w = r["bench"].split()[:3]
    groups.setdefault((p, w), []).append(r)
for (p, w), rs in groups.items():
    for r in rs:
        if r["bench"].startswith("packed"):
            sent = sum(x["bytes_sent"] for x in r["ranks"])
            name = r["layout"] + (" (auto)" if r["bench"].endswith("layout=auto") else "")
            print(f"| {p[2:]} | {w[7:]} | packed | {name} | {r['wall_s']:.3f} | {r['imbalance']:.3f} | {sent} |")
    alone = [r for r in rs if r["bench"].startswith("alone")]
    if alone:
        wall = sum(r["wall_s"] for r in alone)
        sent = sum(sum(x["bytes_sent"] for x in r["ranks"]) for r in alone)
        print(f"| {p[2:]} | {w[7:]} | each alone, summed ({len(alone)} runs) | auto | {wall:.3f} | - | {sent} |")
PY
