#!/usr/bin/env python3
"""Markdown tables of issue #16's targets from the raw rows beside this file.

    python3 benches/results/zen4-2026-12-03d/tables.py [DIR]
"""
import json
import statistics
import sys
from pathlib import Path

d = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)


def rows(name):
    p = d / name
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


k = {}
for r in [r for p in sorted(d.glob("kernel-*.jsonl")) for r in rows(p.name)]:
    k[(r["isa"], r["dtype"], r["seq"], r["head_dim"], r["threads"], r["causal"])] = r

print("| N | D | threads | causal | AVX-512 f32 GFLOP/s (of peak) | bf16 K/V (of peak) | bf16 / f32 | AVX2 f32 (of peak) |")
print("|---|---|---|---|---|---|---|---|")
for seq in (8192, 16384):
    for t in (1, 2):
        for dim in (64, 128):
            for causal in (False, True):
                key = (seq, dim, t, causal)
                f = k.get(("avx512", "f32") + key)
                b = k.get(("avx512", "bf16") + key)
                a = k.get(("avx2", "f32") + key)
                if not f:
                    continue
                cell = lambda r: f"{r['gflops']:.1f} ({r['fraction_of_peak']:.2f})" if r else "–"
                ratio = f"{b['gflops'] / f['gflops']:.2f}" if b else "–"
                print(f"| {seq} | {dim} | {t} | {'yes' if causal else 'no'} | {cell(f)} | {cell(b)} | {ratio} | {cell(a)} |")

kern = [r["gflops"] for r in rows("runpath-kernel.jsonl")]
run = [r["gflops"] for r in rows("runpath-run.jsonl")]
if kern and run:
    km, rm = statistics.median(kern), statistics.median(run)
    print()
    print(f"run path: kernel {' / '.join(f'{x:.1f}' for x in kern)} (median {km:.1f}), "
          f"run {' / '.join(f'{x:.1f}' for x in run)} (median {rm:.1f}): run = {rm / km:.2f}x the kernel")

print()
print("| case | hybrid s | static s | rayon s | ideal s | hybrid / ideal | hybrid / rayon | static / hybrid |")
print("|---|---|---|---|---|---|---|---|")
for case in ("idle", "slowed", "busy"):
    p = d / f"sched-{case}.json"
    if not p.exists():
        continue
    s = json.loads(p.read_text())
    print(f"| {case} | {s['hybrid_s']:.2f} | {s['static_s']:.2f} | {s['rayon_s']:.2f} | {s['ideal_s']:.2f} | "
          f"{s['hybrid_over_ideal']:.2f} | {s['hybrid_s'] / s['rayon_s']:.2f} | {s['static_over_hybrid']:.2f} |")
