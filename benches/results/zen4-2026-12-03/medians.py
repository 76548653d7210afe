#!/usr/bin/env python3
"""Medians over the rounds of model.sh: one row per (tool, backend, context, workers)."""
import glob, json, statistics, sys
root = sys.argv[1]
rows = {}
for path in sorted(glob.glob(f"{root}/model-*-r*/results.jsonl")):
    for line in open(path):
        r = json.loads(line)
        key = (r["tool"], r.get("backend", "-"), r["context"], r["workers"], r.get("threads_per_rank"))
        rows.setdefault(key, []).append(r)
fields = ["prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s", "attention_s", "matmul_s", "peak_rss_bytes"]
print("| tool | backend | context | P x T | n | " + " | ".join(fields) + " |")
for key in sorted(rows, key=lambda k: (k[2], k[0] != "llama.cpp", k[1], k[3])):
    rs = rows[key]
    cells = []
    for f in fields:
        vals = [r[f] for r in rs if r.get(f) is not None]
        cells.append(f"{statistics.median(vals):.4g}" if vals else "-")
    tool, backend, ctx, p, t = key
    print(f"| {tool} | {backend} | {ctx} | {p} x {t} | {len(rs)} | " + " | ".join(cells) + " |")
