#!/usr/bin/env bash
# DuoAttention against full attention (issue #6): N=32768 prompt, P=2 workers, D=128, then
# STEPS decoded tokens; MHA H=32 with the Llama-2-7B pattern at sparsity 0.75 (25% retrieval)
# and GQA 32/8 with the Llama-3-8B pattern at sparsity 0.5 (50% retrieval). A single layer is
# run: the one whose retrieval count equals the model-wide mean (Llama-2 layer 7: 8 of 32;
# Llama-3 layer 5: 4 of 8), so its times stand for the whole model. Prints every decode report
# (JSON lines), then a table of ratios. Usage: bash scripts/bench-duo.sh [STEPS] [SEQ]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-32}
seq=${2:-32768}
# The features of the binary this replaces: with MPI when mpicc exists (a later `launch`
# or `--backend mpi` keeps working).
mpi_features=$(command -v mpicc >/dev/null 2>&1 && echo "--features mpi" || true)
cargo build --release -q $mpi_features
bin=target/release/ringattn
pat=data/duo-patterns
run="lr=0.02-reg=0.05-ctx=1000_32000-multi_passkey10"
out=$(mktemp)
common=(decode --prefill "$seq" --steps "$steps" --workers 2 --head-dim 128 --json -)
for cfg in "mha Llama-2-7B-32K-Instruct 32 32 0.75 7" "gqa Llama-3-8B-Instruct-Gradient-1048k 32 8 0.5 5"; do
  read -r name model heads kv sparsity layer <<<"$cfg"
  shape=(--heads "$heads" --kv-heads "$kv")
  "$bin" "${common[@]}" "${shape[@]}" | sed "s/^{/{\"bench\":\"$name-full\",/" | tee -a "$out"
  "$bin" "${common[@]}" "${shape[@]}" --duo "$pat/$model/$run" --sparsity "$sparsity" --layer "$layer" \
    | sed "s/^{/{\"bench\":\"$name-duo\",/" | tee -a "$out"
  # Contiguous: streaming KV makes one hop (+ the sink) instead of the whole ring.
  "$bin" "${common[@]}" "${shape[@]}" --duo "$pat/$model/$run" --sparsity "$sparsity" --layer "$layer" \
    --layout contiguous | sed "s/^{/{\"bench\":\"$name-duo-contiguous\",/" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["bench"]] = r
def kv(r): return sum(x["kv_bytes_peak"] for x in r["ranks"])
def sent(r): return sum(x["bytes_sent"] for x in r["ranks"])
print("| case | layout (full / duo) | retrieval kv heads | prefill s full / duo (speedup) | decode tok/s full / duo (speedup) | decode KV bytes ratio | ring bytes ratio |")
print("|---|---|---|---|---|---|---|")
for name, variant in [("mha", "duo"), ("mha", "duo-contiguous"), ("gqa", "duo"), ("gqa", "duo-contiguous")]:
    f, d = rows[f"{name}-full"], rows[f"{name}-{variant}"]
    fd, dd = f["decode"], d["decode"]
    duo = d["duo"]
    print(f"| {name} | {f['layout']} / {d['layout']} | {duo['retrieval_kv_heads']}/{duo['retrieval_kv_heads'] + duo['streaming_kv_heads']} | "
          f"{fd['prefill_s']:.2f} / {dd['prefill_s']:.2f} ({fd['prefill_s'] / dd['prefill_s']:.2f}x) | "
          f"{fd['tokens_per_s']:.1f} / {dd['tokens_per_s']:.1f} ({dd['tokens_per_s'] / fd['tokens_per_s']:.2f}x) | "
          f"{kv(f) / kv(d):.2f}x smaller | {sent(f) / sent(d):.2f}x fewer |")
PY
rm -f "$out"
