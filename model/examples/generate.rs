//! Generates text with SmolLM2-135M through the ring, ranks as threads of this process.
//!
//! ```text
//! bash scripts/get-model.sh
//! cargo run --release -p ringattn-model --example generate -- \
//!     --workers 2 --layout striped --max-tokens 32 --chat "What is the capital of France?"
//! ```
//! The text streams to stdout as it is produced; the run report (JSON) goes to stderr.
//! Under MPI: `cargo build --release -p ringattn-model --features mpi --example generate`, then
//! `mpirun -n 2 target/release/examples/generate --mpi ...` (rank 0 prints).
//! `--prompt-file F` reads the prompt from a file; `--prompt-tokens N` repeats / cuts it to
//! about N tokens (benchmarks); `--ignore-eos` decodes exactly `--max-tokens`; `--threads T`
//! kernel threads per rank (default: allowed CPUs / workers); `--dense-decode` decodes with the
//! f32 weights instead of the packed blocks (to compare).

use std::io::Write;

use ringattn_model::{default_model_path, generate_with, GenerateSpec, Model};

/// What the command line asked for.
struct Args {
    spec: GenerateSpec,
    mpi: bool,
    prompt_tokens: Option<usize>,
}

fn main() {
    let Args {
        mut spec,
        mpi,
        prompt_tokens,
    } = parse_args();
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
    let mut show = |_, piece: &str| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    };
    let (report, root) = if mpi {
        run_mpi(&model, &mut spec, &mut show)
    } else {
        (generate_with(&model, &spec, &mut show), true)
    };
    if root {
        println!();
    }
    match report {
        Ok(r) if root => eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Ok(_) => {}
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(if e.is_bad_input() { 2 } else { 1 });
        }
    }
}

/// Reads the options (exit 2 with one line on a bad one).
fn parse_args() -> Args {
    let mut spec = GenerateSpec::new(default_model_path(), "", 32, 1);
    let mut args = std::env::args().skip(1);
    let mut prompt = Vec::new();
    let mut threads = None;
    let mut mpi = false;
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
            "--dense-decode" => spec.weights = ringattn_model::WeightFormat::F32Dense,
            "--mpi" => mpi = true,
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
    Args {
        spec,
        mpi,
        prompt_tokens,
    }
}

/// `--mpi`: this process is one rank of an `mpirun -n P` job (built with `--features mpi`).
/// Returns the report and whether this is rank 0.
#[cfg(feature = "mpi")]
fn run_mpi(
    model: &Model,
    spec: &mut GenerateSpec,
    show: &mut dyn FnMut(u32, &str),
) -> (ringattn_model::Result<ringattn_model::GenerateReport>, bool) {
    use ringattn_runtime::Comm;
    let mut comm = match ringattn_runtime::mpi_backend::MpiComm::init() {
        Ok(c) => c,
        Err(e) => return (Err(e.into()), true),
    };
    spec.world = comm.size();
    spec.pin = false;
    // At most this node's allowed CPUs shared out among its ranks.
    let cpus = ringattn_runtime::sched::topology::allowed_cpus().len();
    let share = (cpus / comm.node_ranks().max(1)).max(1);
    spec.threads_per_rank = spec.threads_per_rank.min(share);
    let rank = comm.rank();
    (
        ringattn_model::generate_rank(model, spec, &mut comm, show),
        rank == 0,
    )
}

/// `--mpi` without the `mpi` feature.
#[cfg(not(feature = "mpi"))]
fn run_mpi(
    _: &Model,
    _: &mut GenerateSpec,
    _: &mut dyn FnMut(u32, &str),
) -> (ringattn_model::Result<ringattn_model::GenerateReport>, bool) {
    eprintln!("--mpi needs the example built with --features mpi");
    std::process::exit(2)
}
