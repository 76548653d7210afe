//! The busy neighbour of the scheduler benchmark: a spinning process of the bench's own,
//! pinned to one core and in a session of its own (so the kernel's autogroup scheduling treats
//! it as another user's job, which `nice` would not tame), started before the timings and
//! stopped — also on error or panic — when the guard is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use ringattn_runtime::sched::topology::pin_current_thread;
use ringattn_runtime::{Error, Result};

/// The running neighbour; killed and reaped on drop.
pub struct Neighbour {
    child: Child,
    /// The CPU it spins on.
    pub cpu: usize,
}

impl Neighbour {
    /// Starts `program args` (a program that calls [`spin`] on `cpu`), under `setsid` when
    /// the system has it.
    pub fn start(cpu: usize, program: &Path, args: &[String]) -> Result<Neighbour> {
        let exe = program;
        let mut cmd = match which("setsid") {
            Some(setsid) => {
                let mut c = Command::new(setsid);
                c.arg(exe).args(args);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Io {
                context: "starting the busy neighbour".into(),
                source: e,
            })?;
        Ok(Neighbour { child, cpu })
    }

    /// Starts this program as its own neighbour on `cpu`: `PROGRAM bench sched --spin-on CPU`
    /// (the command line's hidden option that calls [`spin`]).
    pub fn start_self(cpu: usize) -> Result<Neighbour> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::config(format!("busy neighbour: cannot find this program: {e}")))?;
        let args = ["bench", "sched", "--spin-on", &cpu.to_string()].map(String::from);
        Neighbour::start(cpu, &exe, &args)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The neighbour's body: pin to `cpu` and spin until killed.
pub fn spin(cpu: usize) -> ! {
    pin_current_thread(cpu);
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// The first file called `name` in a PATH directory.
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
