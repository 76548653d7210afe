#!/usr/bin/env python3
"""Issue #16's kernel targets over several runs of the grid: per row, each run's fraction of the
peak (AVX-512 f32, AVX2 f32) and bf16 / f32 ratio, their median, and whether it meets the target.

    python3 benches/results/zen4-2026-12-03e/runs.py DIR [DIR ...]
"""
import json
import statistics
import sys
from pathlib import Path

runs = []
for arg in sys.argv[1:]:
    rows = {}
    for p in sorted(Path(arg).glob("kernel-*.jsonl")):
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[(r["isa"], r["dtype"], r["seq"], r["head_dim"], r["threads"], r["causal"])] = r
    runs.append(rows)


def cell(values, target):
    """'a / b / c → median' with the median in bold when it meets the target."""
    med = statistics.median(values)
    mark = "**" if med >= target else ""
    return " / ".join(f"{v:.2f}" for v in values) + f" → {mark}{med:.2f}{mark}"


print("| N | D | threads | causal | AVX-512 f32 of peak (target ≥ 0.80 D=128, ≥ 0.72 D=64) | bf16 / f32 (≥ 1.3) | AVX2 of peak (≥ 0.70) |")
print("|---|---|---|---|---|---|---|")
met = {"f32": 0, "bf16": 0, "avx2": 0}
total = 0
for seq in (8192, 16384):
    for t in (1, 2):
        for dim in (64, 128):
            for causal in (False, True):
                key = (seq, dim, t, causal)
                f = [r[("avx512", "f32") + key]["fraction_of_peak"] for r in runs]
                ratio = [r[("avx512", "bf16") + key]["gflops"] / r[("avx512", "f32") + key]["gflops"] for r in runs]
                a = [r[("avx2", "f32") + key]["fraction_of_peak"] for r in runs]
                target = 0.80 if dim == 128 else 0.72
                total += 1
                met["f32"] += statistics.median(f) >= target
                met["bf16"] += statistics.median(ratio) >= 1.3
                met["avx2"] += statistics.median(a) >= 0.70
                print(f"| {seq} | {dim} | {t} | {'yes' if causal else 'no'} | {cell(f, target)} | {cell(ratio, 1.3)} | {cell(a, 0.70)} |")
print()
print(f"medians meeting the target: AVX-512 f32 {met['f32']}/{total}, bf16/f32 {met['bf16']}/{total}, AVX2 {met['avx2']}/{total}")
