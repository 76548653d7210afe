//! Child processes that must not outlive the launcher (`launch`'s and `bench scaling --backend
//! mpi`'s mpirun): SIGINT and SIGTERM sent to ringattn are forwarded to the child, ringattn
//! waits for it to end (SIGKILL after [`GRACE`] if it ignores the signal) and returns its
//! status, so no MPI job is left running after its launcher is gone.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGINT, SIGTERM};

/// How long a child may take to end after a forwarded signal before it is killed.
pub const GRACE: Duration = Duration::from_secs(3);

/// How often the child is polled.
const POLL: Duration = Duration::from_millis(20);

/// What ended the wait: the child's status and the signal forwarded to it, if any.
#[derive(Debug)]
pub struct Waited {
    /// The child's exit status.
    pub status: ExitStatus,
    /// SIGINT or SIGTERM when one was received (and forwarded) while waiting.
    pub signal: Option<i32>,
}

/// The flag the SIGINT/SIGTERM handlers set (the signal number), installed on first use and
/// kept: a signal that arrives between two children (`bench scaling`'s sweep) is not lost,
/// the next child is ended at once and the caller stops.
fn received() -> io::Result<&'static Arc<AtomicUsize>> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag);
    }
    let flag = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)?;
    }
    Ok(FLAG.get_or_init(|| flag))
}

/// Installs the SIGINT/SIGTERM handlers (once): call before starting a child, so that a signal
/// arriving before [`wait_forwarding`] is not the default action (ending ringattn, orphaning
/// the child) but forwarded.
pub fn catch_signals() -> io::Result<()> {
    received().map(|_| ())
}

/// Waits for `child`, forwarding SIGINT/SIGTERM received meanwhile, or before it started
/// (see the module docs).
pub fn wait_forwarding(child: &mut Child) -> io::Result<Waited> {
    poll(child, received()?)
}

fn poll(child: &mut Child, received: &AtomicUsize) -> io::Result<Waited> {
    let mut forwarded: Option<(i32, Instant)> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            let signal = forwarded.map(|(s, _)| s);
            return Ok(Waited { status, signal });
        }
        let sig = received.load(Ordering::SeqCst) as i32;
        match forwarded {
            None if sig != 0 => {
                send(child, sig);
                forwarded = Some((sig, Instant::now()));
            }
            Some((_, since)) if since.elapsed() > GRACE => {
                let _ = child.kill();
            }
            _ => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Sends `sig` (SIGINT or SIGTERM) to the child; a child already gone is not an error.
fn send(child: &Child, sig: i32) {
    let signal = if sig == SIGINT {
        Signal::INT
    } else {
        Signal::TERM
    };
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill_process(pid, signal);
    }
}
