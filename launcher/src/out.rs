//! The one way every command prints to standard output ([`out!`](crate::out!) and
//! [`outln!`](crate::outln!)): each write is flushed and checked, so a failing stdout never
//! panics. A closed pipe (`ringattn simulate ... | head -1`) ends the process quietly with exit
//! code 141, as if killed by SIGPIPE like other Unix tools; any other failure (a full disk:
//! `> /dev/full`) is one line on stderr and exit code 1.

use std::io::{ErrorKind, Write};

/// Exit code after the reader of stdout went away (128 + SIGPIPE).
pub const CLOSED_PIPE_EXIT: i32 = 141;

/// Writes `text` to stdout and flushes it; on failure ends the process (see the module docs).
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE_EXIT),
        Err(e) => {
            eprintln!("ringattn: error: writing to standard output: {e}");
            std::process::exit(1)
        }
    }
}

/// `print!` through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_stdout(&format!($($arg)*))
    };
}

/// `println!` through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::write_stdout("\n")
    };
    ($($arg:tt)*) => {
        $crate::out::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// A command's result: the JSON object on stdout (`--json -`), or the summary on stdout and,
/// with `--json PATH`, the pretty JSON written atomically to PATH.
pub fn json_or_summary(
    json: Option<&str>,
    value: &serde_json::Value,
    summary: &str,
) -> ringattn_runtime::Result<()> {
    if let Some(path) = json {
        ringattn::io::write_json(path, value)?;
    }
    if json != Some("-") {
        crate::out!("{summary}");
    }
    Ok(())
}

/// A progress bar on stderr over `total` units drawn with `template`; hidden (drawing nothing)
/// when stderr is not a terminal.
pub fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
