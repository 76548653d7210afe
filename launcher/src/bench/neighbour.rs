//! The busy neighbour of `bench sched --busy-neighbour`: a spinning process of the bench's own,
//! pinned to one core and in a session of its own (so the kernel's autogroup scheduling treats
//! it as another user's job, which `nice` would not tame), started before the timings and
//! stopped — also on error or panic — when the guard is dropped.

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
    /// The neighbour `--busy-neighbour` asks for: none without the flag, on the last of
    /// `cores` for `last` (the flag without a value), else on the CPU given.
    pub fn from_arg(arg: Option<&str>, cores: &[usize]) -> Result<Option<Neighbour>> {
        let cpu = match arg {
            None => return Ok(None),
            Some("last") => *cores
                .last()
                .ok_or_else(|| Error::config("--busy-neighbour: no core to run it on"))?,
            Some(cpu) => cpu.parse::<usize>().map_err(|_| {
                Error::config(format!(
                    "--busy-neighbour: expected a CPU number, got '{cpu}'"
                ))
            })?,
        };
        Neighbour::start(cpu).map(Some)
    }

    /// Starts `ringattn bench sched --spin-on CPU` (this executable), under `setsid` when the
    /// system has it.
    pub fn start(cpu: usize) -> Result<Neighbour> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::config(format!("busy neighbour: cannot find this program: {e}")))?;
        let args = ["bench", "sched", "--spin-on", &cpu.to_string()].map(String::from);
        let mut cmd = match which("setsid") {
            Some(setsid) => {
                let mut c = Command::new(setsid);
                c.arg(exe).args(&args);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(&args);
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
