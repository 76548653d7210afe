#!/usr/bin/env python3
"""A/B of `bench kernel` in one script: REPS rounds, each running every variant once
(`--repeats 1`), alternating so host drift hits all alike; per (D, threads, causal, dtype, label)
the best, mean of the best three and median fraction of the peak.

    python3 ab.py REPS 'label|BINARY bench-kernel-args...' ...
"""
import subprocess, json, sys, statistics, collections, shlex
reps = int(sys.argv[1]); variants = [v.split('|', 1) for v in sys.argv[2:]]
res = collections.defaultdict(list)
for r in range(reps):
    for label, cmd in variants:
        argv = shlex.split(cmd)
        out = subprocess.run([argv[0], 'bench', 'kernel', '--json', '-', '--repeats', '1'] + argv[1:], capture_output=True, text=True).stdout
        for l in out.splitlines():
            d = json.loads(l)
            res[(d['head_dim'], d['threads'], d['causal'], d['dtype'], label)].append(d['fraction_of_peak'])
for k in sorted(res):
    v = sorted(res[k]); print(*k, 'max %.3f top3 %.3f med %.3f' % (v[-1], statistics.mean(v[-3:]), statistics.median(v)))
