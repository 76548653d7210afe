#!/usr/bin/env python3
"""llama.cpp side by side with `ringattn generate` on the same GGUF, machine and threads:
prefill tokens/s and decode tokens/s for prompts of N tokens (flash attention on).

The prompt is the same text the ringattn benchmark uses (`ringattn bench model` writes it to
DIR/prompt.txt and passes --prompt-file; default: README.md and BENCHMARKS.md), repeated and cut
to exactly N tokens with llama.cpp's tokenizer (the same ids as ringattn's).

Usage: pip install llama-cpp-python==0.3.36
       python3 scripts/bench-llamacpp.py --tokens 2048 4096 8192 --threads 2 --decode 32
Prints one JSON line per prompt length (peak_rss_bytes: this process's, so run one length per
process to get that length's).
"""
import argparse
import json
import os
import resource
import time

import numpy as np

from llama_cpp import Llama


def corpus(root):
    text = ""
    for name in ("README.md", "BENCHMARKS.md"):
        p = os.path.join(root, name)
        if os.path.exists(p):
            text += open(p, encoding="utf-8").read() + "\n"
    return text


def last_logits(llm):
    """The logits of the last evaluated token (llama-cpp-python >= 0.3 keeps `scores` only
    with logits_all=True, which would slow the prefill)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(
        os.environ.get("RINGATTN_MODEL_DIR", os.path.expanduser("~/.cache/ringattn/models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--prompt-file", default=None)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    if args.prompt_file:
        text = open(args.prompt_file, encoding="utf-8").read()
    else:
        text = corpus(root)
    for n in args.tokens:
        llm = Llama(model_path=args.model, n_ctx=n + args.decode + 16, n_threads=args.threads,
                    n_threads_batch=args.threads, n_batch=512, flash_attn=True, verbose=False)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        while len(ids) < n:
            ids = ids + ids
        ids = ids[:n]
        t0 = time.perf_counter()
        llm.eval(ids)
        prefill = time.perf_counter() - t0
        tok = int(np.argmax(last_logits(llm)))
        t1 = time.perf_counter()
        for _ in range(args.decode):
            llm.eval([tok])
            tok = int(np.argmax(last_logits(llm)))
        decode = time.perf_counter() - t1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"tool": "llama.cpp", "prompt_tokens": n, "threads": args.threads,
                          "prefill_s": prefill, "prefill_tokens_per_s": n / prefill,
                          "ttft_s": prefill, "decode_tokens": args.decode,
                          "decode_tokens_per_s": args.decode / decode,
                          "peak_rss_bytes": rss}), flush=True)
        del llm


if __name__ == "__main__":
    main()
