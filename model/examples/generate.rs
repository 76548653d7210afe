//! Generates text with SmolLM2-135M through the ring, ranks as threads of this process.
//!
//! ```text
//! bash scripts/get-model.sh
//! cargo run --release -p ringattn-model --example generate -- \
//!     --workers 2 --layout striped --max-tokens 32 --chat "What is the capital of France?"
//! ```
//! The text streams to stdout as it is produced; the run report (JSON) goes to stderr.
//! `--prompt-file F` reads the prompt from a file; `--prompt-tokens N` repeats / cuts it to
//! about N tokens (benchmarks); `--ignore-eos` decodes exactly `--max-tokens`; `--threads T`
//! kernel threads per rank (default: allowed CPUs / workers).

use std::io::Write;

use ringattn_model::{default_model_path, generate_with, GenerateSpec, Model};

fn main() {
    let mut spec = GenerateSpec::new(default_model_path(), "", 32, 1);
    let mut args = std::env::args().skip(1);
    let mut prompt = Vec::new();
    let mut threads = None;
    let (mut prompt_file, mut prompt_tokens) = (None, None);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        let number = |s: String| -> usize {
            s.parse().unwrap_or_else(|_| {
                eprintln!("not a number: {s}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--workers" => spec.world = number(value("--workers")),
            "--threads" => threads = Some(number(value("--threads"))),
            "--max-tokens" => spec.max_tokens = number(value("--max-tokens")),
            "--layout" => {
                spec.layout = value("--layout").parse().unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(2)
                })
            }
            "--model" => spec.model = value("--model").into(),
            "--chat" => spec.chat = true,
            "--ignore-eos" => spec.ignore_eos = true,
            "--prompt-file" => prompt_file = Some(value("--prompt-file")),
            "--prompt-tokens" => prompt_tokens = Some(number(value("--prompt-tokens"))),
            _ => prompt.push(a),
        }
    }
    spec.prompt = prompt.join(" ");
    // Default: the allowed CPUs shared out among the ranks.
    let cpus = ringattn_runtime::sched::topology::allowed_cpus().len();
    spec.threads_per_rank = threads.unwrap_or((cpus / spec.world.max(1)).max(1));
    if let Some(f) = prompt_file {
        spec.prompt = std::fs::read_to_string(&f).unwrap_or_else(|e| {
            eprintln!("cannot read {f}: {e}");
            std::process::exit(2)
        });
    }
    let model = Model::load(&spec.model, spec.weights).unwrap_or_else(|e| {
        eprintln!(
            "error: {e} (fetch the model with `{}`)",
            ringattn_model::FETCH_COMMAND
        );
        std::process::exit(2)
    });
    if let Some(n) = prompt_tokens {
        // Benchmarks: the prompt text repeated, cut to n tokens.
        let mut ids = model.tokenizer.encode(&spec.prompt).unwrap_or_default();
        if ids.is_empty() {
            eprintln!("--prompt-tokens needs a non-empty prompt");
            std::process::exit(2)
        }
        while ids.len() < n {
            ids.extend_from_within(..);
        }
        ids.truncate(n);
        spec.prompt = model.tokenizer.decode(&ids, false).unwrap_or_default();
    }
    let mut out = std::io::stdout();
    let report = generate_with(&model, &spec, &mut |_, piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    });
    println!();
    match report {
        Ok(r) => eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(if e.is_bad_input() { 2 } else { 1 });
        }
    }
}
