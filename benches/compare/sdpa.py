#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention on the shapes of `ringattn bench kernel`.

Prints one JSON object per line with the same fields as `ringattn bench kernel --json -`
(`seq`, `heads`, `kv_heads`, `head_dim`, `causal`, `dtype`, `threads`, `median_s`, `gflops`),
plus `impl: "torch-sdpa"` and the torch version, so the two outputs can be joined on
(seq, head_dim, causal, threads).

FLOPs are counted as ringattn counts them: 4 * H * D * (allowed (q, k) pairs), i.e.
4*H*N^2*D non-causal and 4*H*D*N*(N+1)/2 causal.

Usage:
  python3 benches/compare/sdpa.py [--seq 4096,8192] [--head-dim 64,128] [--threads 1,2]
                                  [--heads 8] [--repeats 5]
torch is not a dependency of ringattn; install it (`pip install torch`) to run this.
"""
import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", default="4096,8192,16384,32768")
    parser.add_argument("--head-dim", default="64,128")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--causal", default="false,true", help="comma list of false/true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("benches/compare/sdpa.py: PyTorch is not installed (pip install torch)", file=sys.stderr)
        return 2

    ints = lambda s: [int(x) for x in s.split(",") if x]
    for threads in ints(args.threads):
        torch.set_num_threads(threads)
        for d in ints(args.head_dim):
            for n in ints(args.seq):
                for causal in [c.strip() == "true" for c in args.causal.split(",")]:
                    g = torch.Generator().manual_seed(0)
                    shape = (1, args.heads, n, d)
                    q = torch.rand(shape, generator=g) * 2 - 1
                    k = torch.rand(shape, generator=g) * 2 - 1
                    v = torch.rand(shape, generator=g) * 2 - 1
                    with torch.no_grad():
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # warm-up
                        times = []
                        for _ in range(args.repeats):
                            t0 = time.perf_counter()
                            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                            times.append(time.perf_counter() - t0)
                    pairs = n * (n + 1) // 2 if causal else n * n
                    flops = 4.0 * args.heads * d * pairs
                    median = statistics.median(times)
                    print(json.dumps({
                        "impl": "torch-sdpa", "torch": torch.__version__,
                        "seq": n, "heads": args.heads, "kv_heads": args.heads, "head_dim": d,
                        "causal": causal, "dtype": "f32", "threads": threads,
                        "median_s": median, "gflops": flops / median / 1e9,
                    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
