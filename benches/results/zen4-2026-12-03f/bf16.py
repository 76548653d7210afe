#!/usr/bin/env python3
"""Issue #16's bf16 target over several runs of bf16.sh: per row, each run's bf16 / f32 GFLOP/s
(AVX-512, the same run) with bf16 Q·Kᵀ and with exact Q, their medians against the 1.3 target,
then the accuracy of each mode (`run --check`).

    python3 benches/results/zen4-2026-12-03f/bf16.py DIR [DIR ...]
"""
import json
import statistics
import sys
from pathlib import Path


def rows(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[(r["dtype"], r["qk_dtype"], r["seq"], r["head_dim"], r["threads"], r["causal"])] = r
    return out


runs = []
for d in sys.argv[1:]:
    r = rows(Path(d) / "kernel-qk-bf16.jsonl")
    r.update(rows(Path(d) / "kernel-qk-f32.jsonl"))
    runs.append(r)


def cell(values, target):
    med = statistics.median(values)
    mark = "**" if med >= target else ""
    return " / ".join(f"{v:.2f}" for v in values) + f" → {mark}{med:.2f}{mark}"


print("| N | D | threads | causal | f32 GFLOP/s (median) | bf16, bf16 Q·Kᵀ / f32 (≥ 1.3) | bf16, exact Q / f32 |")
print("|---|---|---|---|---|---|---|")
met = {"bf16": 0, "f32": 0}
total = 0
for seq in (8192, 16384):
    for t in (1, 2):
        for dim in (64, 128):
            for causal in (False, True):
                key = (seq, dim, t, causal)
                f = [r[("f32", "f32") + key]["gflops"] for r in runs]
                q = [r[("bf16", "bf16") + key]["gflops"] / r[("f32", "f32") + key]["gflops"] for r in runs]
                e = [r[("bf16", "f32") + key]["gflops"] / r[("f32", "f32") + key]["gflops"] for r in runs]
                total += 1
                met["bf16"] += statistics.median(q) >= 1.3
                met["f32"] += statistics.median(e) >= 1.3
                print(f"| {seq} | {dim} | {t} | {'yes' if causal else 'no'} | {statistics.median(f):.0f} | {cell(q, 1.3)} | {cell(e, 1.3)} |")
print()
print(f"medians ≥ 1.3: bf16 Q·Kᵀ {met['bf16']}/{total}, exact Q {met['f32']}/{total}")
check = Path(sys.argv[1]).parent / "check.jsonl"
if check.exists():
    print()
    print("| Q·Kᵀ | D | max out error | max lse error | passed |")
    print("|---|---|---|---|---|")
    for line in check.read_text().splitlines():
        r = json.loads(line)
        c = r["check"]
        print(f"| {r['qk_dtype']} | {r['head_dim']} | {c['max_abs_err']:.2e} | {c['max_lse_err']:.2e} | {c['passed']} |")
