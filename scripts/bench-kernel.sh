#!/usr/bin/env bash
# The kernel table of BENCHMARKS.md: ringattn and PyTorch SDPA on the same shapes, same run.
# N in {4096, 8192, 16384, 32768} x D in {64, 128} x threads {1, 2} x causal/non-causal, H=8.
# Usage: bash scripts/bench-kernel.sh [OUT_DIR]   (needs `pip install torch` for the comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-kernel}
mkdir -p "$out"
cargo build --release -q
seqs=${SEQS:-4096,8192,16384,32768}
target/release/ringattn info --json "$out/info.json"
for threads in 1 2; do
  for d in 64 128; do
    target/release/ringattn bench kernel --seq "$seqs" --head-dim $d --threads $threads \
      --causal false,true --repeats 3 --json - >> "$out/ringattn.jsonl"
    if python3 -c "import torch" 2>/dev/null; then
      python3 benches/compare/sdpa.py --seq "$seqs" --head-dim $d --threads $threads \
        --causal false,true --repeats 3 >> "$out/torch.jsonl" 2>/dev/null
    fi
  done
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
load = lambda f: [json.loads(l) for l in open(os.path.join(out, f))] if os.path.exists(os.path.join(out, f)) else []
key = lambda r: (r["seq"], r["head_dim"], r["threads"], r["causal"])
torch = {key(r): r for r in load("torch.jsonl")}
print("| N | D | threads | causal | ringattn GFLOP/s | % of peak | PyTorch SDPA GFLOP/s | ratio |")
print("|---|---|---|---|---|---|---|---|")
for r in load("ringattn.jsonl"):
    t = torch.get(key(r))
    tg = f"{t['gflops']:.1f}" if t else "—"
    ratio = f"{r['gflops'] / t['gflops']:.2f}×" if t else "—"
    print(f"| {r['seq']} | {r['head_dim']} | {r['threads']} | {'yes' if r['causal'] else 'no'} | "
          f"{r['gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% | {tg} | {ratio} |")
PY
# Per-ISA rows (issue 16): every path this CPU has, each against its own FMA peak, and bf16 K/V
# (vdpbf16ps on AVX512-BF16 CPUs without AMX) beside f32 on the same path.
for isa in $(target/release/ringattn info --json - | python3 -c 'import json,sys; print(" ".join(i for i in json.load(sys.stdin)["isa_available"] if i != "portable"))'); do
  target/release/ringattn bench kernel --isa "$isa" --seq "$seqs" --head-dim 64,128 --threads 1,2 \
    --causal false,true --dtype f32,bf16 --repeats 3 --json - >> "$out/ringattn-isa.jsonl"
done
