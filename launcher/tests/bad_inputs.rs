//! The table-driven bad-input suite (issue 13): one row per case — the arguments, the exit
//! code and a fragment the message must contain. Every row is refused before any compute (or
//! is a tiny run), so the whole table runs in seconds; it runs in CI with the other tests.
//!
//! A row expecting exit 2 must print exactly one `ringattn: error:` line containing the
//! fragment (no panic text); a fragment starting with `Usage` is looked for in the whole of
//! stderr (a missing subcommand prints the help). `{tmp}` is a directory of fixtures made by
//! [`fixtures`]: `dir/`, `fifo`, `bad/results.jsonl` (not UTF-8), `noresults/`,
//! `garbage.safetensors`, `empty.safetensors`, `header.safetensors`, `bad.tsv`.

use std::path::Path;
use std::process::Command;

mod common;
use common::{run, Run};

/// (arguments, expected exit code, fragment of the message).
type Case = (&'static [&'static str], i32, &'static str);

/// Every case (u64::MAX is written out as 18446744073709551615).
#[rustfmt::skip]
const CASES: &[Case] = &[
    (&["run", "--seq", "0"], 2, "--seq"),
    (&["run", "--heads", "0"], 2, "--heads"),
    (&["run", "--kv-heads", "0"], 2, "--kv-heads"),
    (&["run", "--head-dim", "0"], 2, "--head-dim"),
    (&["run", "--workers", "0"], 2, "--workers"),
    (&["run", "--threads", "0"], 2, "--threads"),
    (&["run", "--tile-q", "0"], 2, "--tile-q"),
    (&["run", "--tile-k", "0"], 2, "--tile-k"),
    (&["run", "--seq", "-1"], 2, "--seq"),
    (&["run", "--heads", "-1"], 2, "--heads"),
    (&["run", "--kv-heads", "-1"], 2, "--kv-heads"),
    (&["run", "--head-dim", "-1"], 2, "--head-dim"),
    (&["run", "--workers", "-1"], 2, "--workers"),
    (&["run", "--threads", "-1"], 2, "--threads"),
    (&["run", "--tile-q", "-1"], 2, "--tile-q"),
    (&["run", "--tile-k", "-1"], 2, "--tile-k"),
    (&["run", "--seed", "-1"], 2, "--seed"),
    (&["run", "--seq", "abc"], 2, "--seq"),
    (&["run", "--heads", "abc"], 2, "--heads"),
    (&["run", "--head-dim", "abc"], 2, "--head-dim"),
    (&["run", "--workers", "abc"], 2, "--workers"),
    (&["run", "--threads", "abc"], 2, "--threads"),
    (&["run", "--seq", "18446744073709551615"], 2, "memory"),
    (&["run", "--tile-q", "18446744073709551615"], 2, "memory"),
    (&["run", "--tile-k", "18446744073709551615"], 2, "memory"),
    (&["run", "--workers", "18446744073709551615", "--seq", "18446744073709551615"], 2, "memory"),
    (&["run", "--heads", "18446744073709551615"], 2, "memory"),
    (&["run", "--head-dim", "18446744073709551615"], 2, "memory"),
    (&["run", "--seq", "18446744073709551616"], 2, "--seq"),
    (&["run", "--seq", "10000000000"], 2, "needs"),
    (&["run", "--heads", "1000000000"], 2, "needs"),
    (&["run", "--head-dim", "100000000"], 2, "needs"),
    (&["run", "--tile-q", "1000000000"], 2, "needs"),
    (&["run", "--tile-k", "1000000000"], 2, "needs"),
    (&["run", "--workers", "100000", "--seq", "200000", "--heads", "1", "--head-dim", "16"], 2, "needs"),
    (&["run", "--threads", "100000"], 2, "--threads"),
    (&["run", "--threads", "18446744073709551615"], 2, "--threads"),
    (&["run", "--threads", "18446744073709551615", "--oversubscribe"], 2, "--threads"),
    (&["run", "--slow-cores", "0:1e30"], 2, "--slow-cores"),
    (&["run", "--slow-cores", "0:1e12"], 2, "--slow-cores"),
    (&["run", "--slow-cores", "0:0.5"], 2, "--slow-cores"),
    (&["run", "--slow-cores", "0:nan"], 2, "--slow-cores"),
    (&["run", "--slow-cores", "x"], 2, "--slow-cores"),
    (&["run", "--slow-cores", "0:inf"], 2, "--slow-cores"),
    (&["run", "--sched-alpha", "-0.1"], 2, "-0.1"),
    (&["run", "--sched-alpha", "1"], 2, "--sched-alpha"),
    (&["run", "--sched-alpha", "nan"], 2, "--sched-alpha"),
    (&["run", "--heads", "6", "--kv-heads", "4"], 2, "--kv-heads"),
    (&["run", "--heads", "2", "--kv-heads", "3"], 2, "--kv-heads"),
    (&["run", "--workers", "32", "--seq", "16"], 2, "more workers"),
    (&["run", "--layout", "diagonal"], 2, "--layout"),
    (&["run", "--dtype", "f16"], 2, "--dtype"),
    (&["run", "--backend", "tcp"], 2, "--backend"),
    (&["run", "--sched", "fifo"], 2, "--sched"),
    (&["run", "--check", "0"], 2, "--check"),
    (&["run", "--check", "-3"], 2, "--check"),
    (&["run", "--json", ""], 2, "empty"),
    (&["run", "--json", "{tmp}/dir"], 2, "directory"),
    (&["run", "--json", "/nonexistent/r.json"], 2, "/nonexistent"),
    (&["run", "--output", "/nonexistent/o.safetensors"], 2, "/nonexistent"),
    (&["run", "--output", "{tmp}/dir"], 2, "directory"),
    (&["run", "--output", ""], 2, "--output"),
    (&["run", "--input", "{tmp}/dir"], 2, "directory"),
    (&["run", "--input", "{tmp}/fifo"], 2, "regular file"),
    (&["run", "--input", "/nonexistent.safetensors"], 2, "/nonexistent"),
    (&["run", "--input", "{tmp}/garbage.safetensors"], 2, "garbage"),
    (&["run", "--input", "{tmp}/empty.safetensors"], 2, "empty"),
    (&["run", "--input", "{tmp}/header.safetensors"], 2, "header"),
    (&["run", "--inject-fault", "x"], 2, "--inject-fault"),
    (&["run", "--inject-fault", "5:0", "--workers", "2", "--seq", "16"], 2, "--inject-fault"),
    (&["run", "--retrieval-ratio", "0.5"], 2, "--causal"),
    (&["run", "--causal", "--retrieval-ratio", "2"], 2, "--retrieval-ratio"),
    (&["run", "--causal", "--retrieval-ratio", "-0.5"], 2, "--retrieval-ratio"),
    (&["run", "--causal", "--duo", "/nonexistent"], 2, "/nonexistent"),
    (&["run", "--causal", "--duo", "{tmp}/bad.tsv"], 2, "bad.tsv"),
    (&["run", "--causal", "--duo", "{tmp}/fifo"], 2, "fifo"),
    (&["run", "--causal", "--retrieval-ratio", "0.5", "--sink", "18446744073709551615", "--recent", "18446744073709551615", "--seq", "64", "--heads", "2", "--head-dim", "8", "--workers", "1", "--threads", "1", "--check"], 0, ""),
    (&["run", "--unknown-flag"], 2, "--unknown-flag"),
    (&["run", "extra"], 2, "extra"),
    (&["run", "--seq"], 2, "--seq"),
    (&["decode", "--prefill", "0"], 2, "--prefill"),
    (&["decode", "--steps", "0"], 2, "--steps"),
    (&["decode", "--heads", "0"], 2, "--heads"),
    (&["decode", "--kv-heads", "0"], 2, "--kv-heads"),
    (&["decode", "--head-dim", "0"], 2, "--head-dim"),
    (&["decode", "--workers", "0"], 2, "--workers"),
    (&["decode", "--threads", "0"], 2, "--threads"),
    (&["decode", "--prefill", "-1"], 2, "--prefill"),
    (&["decode", "--steps", "-1"], 2, "--steps"),
    (&["decode", "--heads", "-1"], 2, "--heads"),
    (&["decode", "--workers", "-1"], 2, "--workers"),
    (&["decode", "--steps", "18446744073709551615"], 2, "memory"),
    (&["decode", "--prefill", "18446744073709551615"], 2, "memory"),
    (&["decode", "--steps", "1000000000000"], 2, "needs"),
    (&["decode", "--prefill", "10000000000"], 2, "needs"),
    (&["decode", "--threads", "100000"], 2, "--threads"),
    (&["decode", "--slow-cores", "0:1e12"], 2, "--slow-cores"),
    (&["decode", "--json", ""], 2, "empty"),
    (&["decode", "--json", "/nonexistent/d.json"], 2, "/nonexistent"),
    (&["decode", "--heads", "6", "--kv-heads", "4"], 2, "--kv-heads"),
    (&["decode", "--layout", "spiral"], 2, "--layout"),
    (&["decode", "--retrieval-ratio", "7"], 2, "--retrieval-ratio"),
    (&["decode", "--workers", "64", "--prefill", "16"], 2, "more workers"),
    (&["decode", "--duo", "/nonexistent"], 2, "/nonexistent"),
    (&["decode", "--input", "x"], 2, "--input"),
    (&["simulate", "--seq", "64"], 2, "--workers"),
    (&["simulate", "--workers", "4"], 2, "--seq"),
    (&["simulate", "--workers", "4", "--seq", "64", "--workers", "0"], 2, "--workers"),
    (&["simulate", "--workers", "4", "--seq", "64", "--seq", "0"], 2, "--seq"),
    (&["simulate", "--workers", "4", "--seq", "64", "--heads", "0"], 2, "--heads"),
    (&["simulate", "--workers", "4", "--seq", "64", "--head-dim", "0"], 2, "--head-dim"),
    (&["simulate", "--workers", "4", "--seq", "64", "--tile-q", "0"], 2, "--tile-q"),
    (&["simulate", "--workers", "4", "--seq", "64", "--tile-k", "0"], 2, "--tile-k"),
    (&["simulate", "--workers", "18446744073709551615", "--seq", "64"], 2, ""),
    (&["simulate", "--workers", "4", "--seq", "18446744073709551615"], 2, ""),
    (&["simulate", "--workers", "1000000000", "--seq", "2000000000"], 2, ""),
    (&["simulate", "--workers", "-2", "--seq", "64"], 2, "--workers"),
    (&["simulate", "--workers", "4", "--seq", "64", "--gflops-per-rank", "-1"], 2, "--gflops-per-rank"),
    (&["simulate", "--workers", "4", "--seq", "64", "--gflops-per-rank", "nan"], 2, "--gflops-per-rank"),
    (&["simulate", "--workers", "4", "--seq", "64", "--link-gbps", "0"], 2, "--link-gbps"),
    (&["simulate", "--workers", "4", "--seq", "64", "--latency-us", "-5"], 2, "--latency-us"),
    (&["simulate", "--workers", "4", "--seq", "64", "--layout", "x"], 2, "--layout"),
    (&["simulate", "--workers", "8", "--seq", "4"], 2, "more"),
    (&["simulate", "--workers", "4", "--seq", "64", "--json", ""], 2, "empty"),
    (&["simulate", "--workers", "4", "--seq", "64", "--heads", "6", "--kv-heads", "4"], 2, "kv-heads"),
    (&["simulate", "--workers", "4", "--seq", "64", "--retrieval-ratio", "0.5"], 2, "causal"),
    (&["simulate", "--workers", "4", "--seq", "64", "--all-busy-speed", "0"], 2, "--all-busy-speed"),
    (&["simulate", "--workers", "4", "--seq", "64", "--partial-cost", "-1"], 2, "--partial-cost"),
    (&["simulate", "--workers", "4", "--seq", "64", "--threads", "0"], 2, "--threads"),
    (&["bench", "scaling", "--workers", "1"], 2, "--out"),
    (&["bench", "scaling", "--out", "{tmp}/s"], 2, "--workers"),
    (&["bench", "scaling", "--workers", "0", "--out", "{tmp}/s"], 2, "--workers"),
    (&["bench", "scaling", "--workers", "1", "--seq", "0", "--out", "{tmp}/s"], 2, "--seq"),
    (&["bench", "scaling", "--workers", "1", "--threads", "0", "--out", "{tmp}/s"], 2, "--threads"),
    (&["bench", "scaling", "--workers", "1", "--threads", "100000", "--out", "{tmp}/s"], 2, "--threads"),
    (&["bench", "scaling", "--workers", "1", "--seq", "10000000000", "--out", "{tmp}/s"], 2, "needs"),
    (&["bench", "scaling", "--mode", "weak", "--workers", "1,3", "--seq", "6148914691236517206", "--out", "{tmp}/s"], 2, "overflows"),
    (&["bench", "scaling", "--workers", "1", "--layout", "auto", "--out", "{tmp}/s"], 2, "auto"),
    (&["bench", "scaling", "--workers", "1", "--mode", "sideways", "--out", "{tmp}/s"], 2, "--mode"),
    (&["bench", "scaling", "--workers", "1,x", "--out", "{tmp}/s"], 2, "--workers"),
    (&["bench", "scaling", "--workers", "-1", "--out", "{tmp}/s"], 2, "--workers"),
    (&["bench", "scaling", "--workers", "64", "--seq", "16", "--out", "{tmp}/s"], 2, "more workers"),
    (&["bench", "scaling", "--workers", "1", "--heads", "6", "--kv-heads", "4", "--out", "{tmp}/s"], 2, "kv-heads"),
    (&["bench", "scaling", "--workers", "1", "--backend", "carrier-pigeon", "--out", "{tmp}/s"], 2, "--backend"),
    (&["bench", "kernel", "--seq", "0"], 2, "--seq"),
    (&["bench", "kernel", "--head-dim", "0"], 2, "--head-dim"),
    (&["bench", "kernel", "--threads", "0"], 2, "--threads"),
    (&["bench", "kernel", "--heads", "0"], 2, "--heads"),
    (&["bench", "kernel", "--kv-heads", "0"], 2, "--kv-heads"),
    (&["bench", "kernel", "--repeats", "0"], 2, "--repeats"),
    (&["bench", "kernel", "--tile-q", "0"], 2, "--tile-q"),
    (&["bench", "kernel", "--tile-k", "0"], 2, "--tile-k"),
    (&["bench", "kernel", "--seq", "10000000000"], 2, "needs"),
    (&["bench", "kernel", "--threads", "100000"], 2, "--threads"),
    (&["bench", "kernel", "--seq", "-4"], 2, "--seq"),
    (&["bench", "kernel", "--heads", "6", "--kv-heads", "4"], 2, "--kv-heads"),
    (&["bench", "kernel", "--isa", "sse9"], 2, "--isa"),
    (&["bench", "kernel", "--seq", "1,x"], 2, "--seq"),
    (&["bench", "kernel", "--slow-cores", "0:1e12"], 2, "--slow-cores"),
    (&["bench", "kernel", "--sched-alpha", "2"], 2, "--sched-alpha"),
    (&["bench", "sched", "--calls", "0"], 2, "--calls"),
    (&["bench", "sched", "--seq", "0"], 2, "--seq"),
    (&["bench", "sched", "--heads", "0"], 2, "--heads"),
    (&["bench", "sched", "--head-dim", "0"], 2, "--head-dim"),
    (&["bench", "sched", "--threads", "0"], 2, "--threads"),
    (&["bench", "sched", "--seq", "10000000000"], 2, "needs"),
    (&["bench", "sched", "--threads", "100000"], 2, "--threads"),
    (&["bench", "sched", "--slow-cores", "0:1e12"], 2, "--slow-cores"),
    (&["bench", "sched", "--sched-alpha", "-0.1"], 2, "-0.1"),
    (&["bench", "sched", "--calls", "-1"], 2, "--calls"),
    (&["bench"], 2, "Usage:"),
    (&["bench", "nonsense"], 2, "nonsense"),
    (&["duo", "inspect"], 2, "PATTERN"),
    (&["duo", "inspect", "/nonexistent"], 2, "/nonexistent"),
    (&["duo", "inspect", "{tmp}/bad.tsv"], 2, "bad.tsv"),
    (&["duo", "inspect", "{tmp}/fifo"], 2, "fifo"),
    (&["duo", "inspect", "{tmp}/dir"], 2, "dir"),
    (&["duo", "inspect", "{tmp}/bad.tsv", "--context", "-1"], 2, "--seq"),
    (&["duo"], 2, "Usage:"),
    (&["duo", "inspect", "{tmp}/bad.tsv", "--retrieval-ratio", "2"], 2, ""),
    (&["launch", "-n", "2"], 2, "RUN"),
    (&["launch", "-n", "0", "--", "run"], 2, "--workers"),
    (&["launch", "-n", "-1", "--", "run"], 2, "--workers"),
    (&["launch", "-p", "-1", "--", "run"], 2, "--workers"),
    (&["launch", "--", "run"], 2, ""),
    (&["launch", "-n", "2", "--mpirun", "/nonexistent/mpirun", "--", "run"], 2, "/nonexistent"),
    (&["launch", "-n", "2", "--", "simulate"], 2, "run"),
    (&["launch", "-n", "x", "--", "run"], 2, "--workers"),
    (&["launch", "--workers", "0", "--", "run"], 2, "--workers"),
    (&["launch", "-n", "2", "--", "run", "--backend", "local"], 2, ""),
    (&["sbatch"], 2, "--nodes"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1"], 2, "RUN"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--time", "yesterday", "--", "run"], 2, "--time"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--job-name", "a\nb", "--", "run"], 2, "a\\nb"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--job-name", "a b", "--", "run"], 2, "--job-name"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--partition", "a;b", "--", "run"], 2, "--partition"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--account", "$(x)", "--", "run"], 2, "--account"),
    (&["sbatch", "--nodes", "0", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--", "run"], 2, "--nodes"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "0", "--cpus-per-task", "1", "--", "run"], 2, "--ntasks-per-node"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "0", "--", "run"], 2, "--cpus-per-task"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--", "simulate"], 2, "run"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--launcher", "pbs", "--", "run"], 2, "--launcher"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--time", "1:2:3:4", "--", "run"], 2, "--time"),
    (&["sbatch", "--nodes", "1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--time", "", "--", "run"], 2, "--time"),
    (&["sbatch", "--nodes", "-1", "--ntasks-per-node", "1", "--cpus-per-task", "1", "--", "run"], 2, "--nodes"),
    (&["info", "--json", "/nonexistent/i.json"], 2, "/nonexistent"),
    (&["simulate", "--workers", "4", "--seq", "64", "--json", "/nonexistent/s.json"], 2, "/nonexistent"),
    (&["duo", "inspect", "{tmp}/bad.tsv", "--json", "/nonexistent/d.json"], 2, "/nonexistent"),
    (&["bench", "sched", "--json", "/nonexistent/b.json"], 2, "/nonexistent"),
    (&["bench", "kernel", "--json", "/nonexistent/k.json"], 2, "/nonexistent"),
    (&["bench", "kernel", "--json", ""], 2, "empty"),
    (&["bench", "sched", "--json", ""], 2, "empty"),
    (&["bench", "model", "--context", "0", "--out", "{tmp}/bm"], 2, "--context"),
    (&["bench", "model", "--context", "-1", "--out", "{tmp}/bm"], 2, "--context"),
    (&["bench", "model", "--workers", "0", "--out", "{tmp}/bm"], 2, "--workers"),
    (&["bench", "model", "--max-tokens", "0", "--out", "{tmp}/bm"], 2, "--max-tokens"),
    (&["bench", "model", "--threads", "0", "--out", "{tmp}/bm"], 2, "--threads"),
    (&["bench", "model", "--workers", "4", "--context", "2", "--out", "{tmp}/bm"], 2, "4 ranks"),
    (&["bench", "model", "--prompt-file", "{tmp}/dir", "--out", "{tmp}/bm"], 2, "dir"),
    (&["bench", "model", "--prompt-file", "{tmp}/bad.tsv", "--model", "/nonexistent/m.gguf", "--out", "{tmp}/bm"], 2, "get-model.sh"),
    (&["bench", "model"], 2, "--out"),
    (&["info", "--json", ""], 2, "empty"),
    (&["info", "extra"], 2, "extra"),
    (&["plot"], 2, "DIR"),
    (&["plot", "{tmp}/bad"], 2, "UTF-8"),
    (&["plot", "{tmp}/noresults"], 2, "not found"),
    (&["plot", "/nonexistent"], 2, "not found"),
    (&[], 2, "Usage:"),
    (&["frobnicate"], 2, "frobnicate"),
    (&["--version"], 0, ""),
    (&["run", "--help"], 0, ""),
    // Packed documents and sliding windows (issue 17).
    (&["run", "--seq", "10", "--docs", "3,3"], 2, "add up to 6"),
    (&["run", "--seq", "10", "--docs", "3,0,7"], 2, "length 0"),
    (&["run", "--seq", "10", "--docs", "3,x,7"], 2, "--docs"),
    (&["run", "--seq", "10", "--docs", ""], 2, "--docs"),
    (&["run", "--seq", "10", "--docs", "-3,13"], 2, "-3"),
    (&["run", "--seq", "10", "--docs", "18446744073709551615,1"], 2, "--docs"),
    (&["run", "--seq", "10", "--docs", "18446744073709551616"], 2, "--docs"),
    (&["run", "--seq", "10", "--docs", "5,5", "--docs-file", "{tmp}/bad.tsv"], 2, "--docs"),
    (&["run", "--seq", "10", "--docs-file", "{tmp}/bad.tsv"], 2, "bad.tsv"),
    (&["run", "--seq", "10", "--docs-file", "{tmp}/missing-docs.txt"], 2, "missing-docs.txt"),
    (&["run", "--seq", "10", "--docs-file", "{tmp}/dir"], 2, "dir"),
    (&["run", "--seq", "10", "--window", "0"], 2, "--window"),
    (&["run", "--seq", "10", "--window", "-1"], 2, "--window"),
    (&["run", "--seq", "10", "--window", "abc"], 2, "--window"),
    (&["run", "--seq", "10", "--causal", "--docs", "5,5", "--retrieval-ratio", "0.5"], 2, "--docs"),
    (&["decode", "--prefill", "10", "--docs", "3,3"], 2, "add up to 6"),
    (&["decode", "--prefill", "10", "--window", "0"], 2, "--window"),
    (&["run", "--seq", "10", "--layout", "docs"], 2, "needs packed documents"),
    (&["decode", "--prefill", "10", "--layout", "docs"], 2, "needs packed documents"),
    (&["simulate", "--workers", "2", "--seq", "10", "--layout", "docs"], 2, "needs packed documents"),
    (&["simulate", "--workers", "2", "--seq", "10", "--docs", "3,4"], 2, "add up to 7"),
    (&["simulate", "--workers", "2", "--seq", "10", "--window", "0"], 2, "--window"),
    (&["simulate", "--workers", "2", "--seq", "10", "--docs", "3,x"], 2, "--docs"),
    // DuoAttention calibration and evaluation (issue 15).
    (&["duo", "calibrate"], 2, "--out"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--method", "bogus"], 2, "--method"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--samples", "0"], 2, "--samples"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--samples", "-1"], 2, "--samples"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--context", "10"], 2, "--context"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--recent", "0"], 2, "--recent"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--threads", "0"], 2, "--threads"),
    (&["duo", "calibrate", "--out", "{tmp}/cal", "--seed", "abc"], 2, "--seed"),
    (&["duo", "calibrate", "--out", "{tmp}/bad.tsv"], 2, "bad.tsv"),
    (&["eval"], 2, "Usage:"),
    (&["eval", "passkey"], 2, "--out"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0.5"], 2, "--random-heads"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--random-heads", "1", "--sparsity", "1.5"], 2, "--sparsity"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--random-heads", "1", "--sparsity", "0.5,"], 2, "--sparsity"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--random-heads", "1", "--sparsity", "abc"], 2, "--sparsity"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--context", "0"], 2, "--context"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--context", "1024,x"], 2, "--context"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--depth", "2"], 2, "--depth"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--depth", "-0.5"], 2, "--depth"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--trials", "0"], 2, "--trials"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--workers", "0"], 2, "--workers"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--sparsity", "0", "--random-heads", "-1"], 2, "--random-heads"),
    (&["eval", "passkey", "--out", "{tmp}/pk", "--duo", "{tmp}/dir", "--random-heads", "1"], 2, "--random-heads"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--prompt-file", "{tmp}/bad.tsv"], 2, "--duo"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--duo", "{tmp}/dir", "--prompt-file", "/nonexistent"], 2, "/nonexistent"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--duo", "{tmp}/dir", "--prompt-file", "{tmp}/bad.tsv", "--last", "0"], 2, "--last"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--duo", "{tmp}/dir", "--prompt-file", "{tmp}/bad.tsv", "--sparsity", "2"], 2, "--sparsity"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--random-heads", "x", "--prompt-file", "{tmp}/bad.tsv"], 2, "--random-heads"),
    (&["eval", "fidelity", "--out", "{tmp}/f", "--duo", "{tmp}/dir", "--prompt-file", "{tmp}/bad.tsv", "--context", "0"], 2, "--context"),
];

/// The fixture files the cases name through `{tmp}`; false when `mkfifo` is missing (the
/// FIFO rows are then skipped).
fn fixtures(dir: &Path) -> bool {
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    std::fs::create_dir_all(dir.join("bad")).unwrap();
    std::fs::create_dir_all(dir.join("noresults")).unwrap();
    std::fs::write(dir.join("bad/results.jsonl"), b"\xff\xfe{}\n").unwrap();
    std::fs::write(dir.join("garbage.safetensors"), [0x5au8; 100]).unwrap();
    std::fs::write(dir.join("empty.safetensors"), b"").unwrap();
    std::fs::write(dir.join("bad.tsv"), b"not a pattern\n").unwrap();
    // A header length of 8 followed by a header that is not a tensor table.
    let mut header = 8u64.to_le_bytes().to_vec();
    header.extend_from_slice(b"{\"a\":1}  ");
    std::fs::write(dir.join("header.safetensors"), header).unwrap();
    Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .is_ok_and(|s| s.success())
}

/// What is wrong with one case's result, if anything.
fn judge(case: &Case, args: &[String], r: &Run) -> Option<String> {
    let (_, code, fragment) = *case;
    let fail = |why: &str| Some(format!("ringattn {args:?}: {why}\n{}", r.describe()));
    if r.code != Some(code) {
        return fail(&format!("expected exit code {code}"));
    }
    if code == 0 {
        return None;
    }
    if r.stderr.contains("panicked") || r.stderr.contains("RUST_BACKTRACE") {
        return fail("panic text on stderr");
    }
    if fragment.starts_with("Usage") {
        return (!r.stderr.contains(fragment)).then(|| format!("{args:?}: no usage text"));
    }
    let lines: Vec<&str> = r.stderr.lines().collect();
    match lines.as_slice() {
        [line] if line.starts_with("ringattn: error:") && line.contains(fragment) => None,
        _ => fail(&format!(
            "expected one `ringattn: error:` line containing `{fragment}`"
        )),
    }
}

#[test]
fn every_bad_input_is_refused_with_its_exit_code_and_message() {
    assert!(CASES.len() >= 150, "the suite must keep at least 150 rows");
    let tmp = tempfile::tempdir().unwrap();
    let have_fifo = fixtures(tmp.path());
    let dir = tmp.path().display().to_string();
    let cwd = tmp.path();
    let cases: Vec<(Case, Vec<String>)> = CASES
        .iter()
        .filter(|c| have_fifo || !c.0.iter().any(|a| a.contains("{tmp}/fifo")))
        .map(|c| (*c, c.0.iter().map(|a| a.replace("{tmp}", &dir)).collect()))
        .collect();
    // Two runners: the cases are short, the machine may be shared.
    let failures: Vec<String> = std::thread::scope(|s| {
        let halves = cases.chunks(cases.len().div_ceil(2));
        let handles: Vec<_> = halves
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(case, args)| {
                            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
                            cmd.args(args).current_dir(cwd);
                            judge(case, args, &run(cmd))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a runner thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
