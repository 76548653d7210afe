#!/usr/bin/env python3
"""Medians over the rounds of quiet.sh's model grid, one row per (tool, backend, context, P x T),
with each ringattn row's prefill and decode rates as ratios of llama.cpp's median at the same
context (the same 2 cores)."""
import glob, json, statistics, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
rows = {}
for path in sorted(glob.glob(f"{root}/model-*-r*/results.jsonl")):
    for line in open(path):
        r = json.loads(line)
        key = (r["tool"], r.get("backend", "-"), r["context"], r["workers"], r.get("threads_per_rank"))
        rows.setdefault(key, []).append(r)
fields = ["prefill_tokens_per_s", "decode_tokens_per_s", "attention_s", "matmul_s", "peak_rss_bytes"]
med = {k: {f: statistics.median([r[f] for r in rs if r.get(f) is not None] or [float("nan")])
           for f in fields} for k, rs in rows.items()}
llama = {k[2]: v for k, v in med.items() if k[0] == "llama.cpp"}
print("| tool | backend | context | P x T | n | prefill tok/s | x llama.cpp | decode tok/s | x llama.cpp | attention s | matmul s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows, key=lambda k: (k[2], k[0] != "llama.cpp", k[1], k[3])):
    m, ref = med[key], llama.get(key[2])
    ratio = lambda f: f"{m[f] / ref[f]:.2f}" if ref and key[0] != "llama.cpp" else "-"
    tool, backend, ctx, p, t = key
    print(f"| {tool} | {backend} | {ctx} | {p} x {t} | {len(rows[key])} | {m['prefill_tokens_per_s']:.1f} | "
          f"{ratio('prefill_tokens_per_s')} | {m['decode_tokens_per_s']:.1f} | {ratio('decode_tokens_per_s')} | "
          f"{m['attention_s']:.2f} | {m['matmul_s']:.2f} | {m['peak_rss_bytes'] / 1e6:.0f} |")
