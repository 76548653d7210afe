//! The hybrid-core scheduler (Intel, "A dynamic parallel method for performance optimization on
//! hybrid CPUs", arXiv 2411.19542), which runs every kernel of a rank.
//!
//! One persistent thread per core, pinned ([`topology`] reads the cores from the affinity mask).
//! A kernel hands [`Executor::run`] its independent work items with a cost estimate each; the
//! hybrid scheduler splits them into contiguous ranges proportional to each core's ratio for
//! that kernel class, times every thread's own work (not its wait at the end), and updates the
//! ratios ([`ratios`]); a thread whose range is done steals single items from the back of the
//! range with the most cost left (`steal.rs`), so a core that slows down within a call (a
//! neighbour process taking turns on it) delays nobody until the ratios catch up. Beyond the paper: one ratio per core (not one P/E pair), ratios cached
//! between runs, calls too short to time ignored, and items weighted by cost so causal tiles
//! split evenly. `static` splits by cost evenly; `rayon` uses work stealing on the same pinned
//! threads. Every scheduler computes every item the same way, so results are bitwise equal.

pub mod ratios;
pub mod slow;
mod steal;
pub mod topology;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use ratios::{split_by_cost, CacheFile, RatioTable};
use steal::SplitQueue;
use topology::{format_cpu_list, pin_current_thread, Topology};

pub use slow::{parse_bounded_slow_cores, parse_slow_cores, SlowCore, MAX_SLOW_FACTOR};

/// Runs a kernel's independent work items on some threads.
pub trait Executor: Sync {
    /// Number of threads.
    fn threads(&self) -> usize;

    /// Calls `work(state, item)` once for every item, each thread with its own `state` from
    /// `init`, and returns the states. `cost(item)` estimates an item's relative work and
    /// `class` names the kernel (ratios are kept per class).
    fn run<T: Send, S: Send>(
        &self,
        class: &str,
        items: &mut [T],
        cost: &(dyn Fn(&T) -> f64 + Sync),
        init: &(dyn Fn() -> S + Sync),
        work: &(dyn Fn(&mut S, &mut T) + Sync),
    ) -> Vec<S>;
}

/// A plain rayon pool is an executor with work stealing (what tests and benches without a
/// scheduler use).
impl Executor for rayon::ThreadPool {
    fn threads(&self) -> usize {
        self.current_num_threads()
    }

    fn run<T: Send, S: Send>(
        &self,
        _class: &str,
        items: &mut [T],
        _cost: &(dyn Fn(&T) -> f64 + Sync),
        init: &(dyn Fn() -> S + Sync),
        work: &(dyn Fn(&mut S, &mut T) + Sync),
    ) -> Vec<S> {
        self.install(|| {
            items
                .par_iter_mut()
                .fold(init, |mut s, item| {
                    work(&mut s, item);
                    s
                })
                .collect()
        })
    }
}

/// How a [`Scheduler`] splits work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SchedKind {
    /// Contiguous ranges ∝ each core's measured ratio, updated after every call; the last
    /// items are stolen by the threads that finish first.
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Split each kernel's work ∝ every core's measured speed, learned as it runs \
            (Intel's dynamic method for hybrid CPUs, one ratio per core)"
        )
    )]
    Hybrid,
    /// Contiguous ranges of equal cost.
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Split each kernel's work evenly by cost (the usual OpenMP-style static split)"
        )
    )]
    Static,
    /// Rayon work stealing.
    Rayon,
}

impl SchedKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            SchedKind::Hybrid => "hybrid",
            SchedKind::Static => "static",
            SchedKind::Rayon => "rayon",
        }
    }
}

/// How to build a [`Scheduler`].
#[derive(Clone, Debug)]
pub struct SchedConfig {
    /// Hybrid, static or rayon.
    pub kind: SchedKind,
    /// Number of threads.
    pub threads: usize,
    /// CPU ids to pin thread i to `cores[i]`; empty = unpinned.
    pub cores: Vec<usize>,
    /// Slowed cores (testing aid).
    pub slow: Vec<SlowCore>,
    /// Weight kept from the old ratio per update.
    pub alpha: f64,
    /// Ratio cache to read at start and write by [`Scheduler::save`]; `None` = no cache.
    pub cache: Option<PathBuf>,
}

impl SchedConfig {
    /// `threads` threads of `kind` pinned to `cores` (empty: unpinned), no slow cores, default
    /// smoothing, no cache.
    pub fn new(kind: SchedKind, threads: usize, cores: Vec<usize>) -> Self {
        SchedConfig {
            kind,
            threads,
            cores,
            slow: Vec::new(),
            alpha: ratios::DEFAULT_ALPHA,
            cache: None,
        }
    }
}

/// A cost model standing in for the clock: `model(thread, work)` is the busy time in seconds of
/// thread `thread` for items of total cost `work`.
pub type BusyModel = Arc<dyn Fn(usize, f64) -> f64 + Send + Sync>;

/// Where a [`Scheduler`] takes each thread's busy time from.
///
/// Runs use the real clock. Tests of the learning logic use a [`BusyModel`], so that what they
/// assert ("the ratios reach 2:1 when thread 1 reports twice the time") never depends on how
/// loaded the machine is; real timing is measured only by `bench sched`.
#[derive(Clone, Default)]
pub enum BusyClock {
    /// Wall-clock time of each thread's own items (not its wait for the others).
    #[default]
    Real,
    /// The model's time for the cost each thread ran, times the thread's slow factor; slowed
    /// threads do not spin.
    Model(BusyModel),
}

impl std::fmt::Debug for BusyClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusyClock::Real => "Real",
            BusyClock::Model(_) => "Model",
        })
    }
}

/// What the last kernel call under a [`Scheduler`] did, per thread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Kernel class.
    pub class: String,
    /// Seconds each thread spent on its own items (not waiting for the others).
    pub busy_s: Vec<f64>,
    /// Cost of the items each thread ran (the split; all zero under rayon).
    pub work: Vec<f64>,
    /// Whether the call updated the ratios.
    pub updated: bool,
}

/// The scheduler of one rank: pinned threads, ratios per kernel class, and the last call's
/// measurements.
pub struct Scheduler {
    kind: SchedKind,
    pool: rayon::ThreadPool,
    /// Slow factor per thread (1 = normal).
    slow: Vec<f64>,
    cores: Vec<usize>,
    table: Mutex<RatioTable>,
    last: Mutex<CallRecord>,
    cache: Option<PathBuf>,
    clock: BusyClock,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("kind", &self.kind)
            .field("threads", &self.slow.len())
            .field("cores", &self.cores)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Scheduler {
    /// Starts the threads (pinned when `cfg.cores` is not empty) and loads cached ratios.
    pub fn new(cfg: SchedConfig) -> Result<Scheduler> {
        let threads = cfg.threads.max(1);
        if !cfg.cores.is_empty() && cfg.cores.len() != threads {
            return Err(Error::config(format!(
                "scheduler: {threads} threads but {} cores to pin them to",
                cfg.cores.len()
            )));
        }
        let pins = cfg.cores.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ringattn-sched-{i}"))
            .start_handler(move |i| {
                if let Some(&cpu) = pins.get(i) {
                    pin_current_thread(cpu);
                }
            })
            .build()
            .map_err(|e| Error::config(format!("cannot start kernel threads: {e}")))?;
        let slow = (0..threads)
            .map(|i| {
                let cpu = cfg.cores.get(i).copied().unwrap_or(i);
                cfg.slow
                    .iter()
                    .filter(|s| s.cpu == cpu)
                    .map(|s| s.factor)
                    .fold(1.0, f64::max)
            })
            .collect();
        let initial = if cfg.cores.is_empty() {
            vec![1.0; threads]
        } else {
            Topology::of(&cfg.cores).initial_ratios()
        };
        let mut table = RatioTable::new(initial, cfg.alpha);
        let sched = Scheduler {
            kind: cfg.kind,
            pool,
            slow,
            cores: cfg.cores,
            table: Mutex::new(RatioTable::new(vec![1.0; threads], cfg.alpha)),
            last: Mutex::new(CallRecord::default()),
            cache: cfg.cache,
            clock: BusyClock::Real,
        };
        if let (SchedKind::Hybrid, Some(path)) = (sched.kind, &sched.cache) {
            let file = CacheFile::load(path);
            if let Some(classes) = file.entries.get(&sched.cache_key()) {
                for (class, r) in classes {
                    // A class the cache holds badly (see RatioError) starts from the initial
                    // ratios, as if it had never been measured.
                    let _ = table.set(class, r);
                }
            }
        }
        *sched.table.lock().expect("ratio table") = table;
        Ok(sched)
    }

    /// This scheduler with its busy times taken from `clock` (default: the real clock).
    pub fn with_clock(mut self, clock: BusyClock) -> Scheduler {
        self.clock = clock;
        self
    }

    /// Hybrid, static or rayon.
    pub fn kind(&self) -> SchedKind {
        self.kind
    }

    /// CPU ids the threads are pinned to (empty: unpinned).
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// The current ratios of `class`, one per thread, mean 1.
    pub fn ratios(&self, class: &str) -> Vec<f64> {
        self.table.lock().expect("ratio table").get(class)
    }

    /// The ratios of every measured class.
    pub fn all_ratios(&self) -> std::collections::BTreeMap<String, Vec<f64>> {
        self.table.lock().expect("ratio table").classes().clone()
    }

    /// What the last call did.
    pub fn last_call(&self) -> CallRecord {
        self.last.lock().expect("call record").clone()
    }

    /// The key of this core set in the cache file.
    fn cache_key(&self) -> String {
        if self.cores.is_empty() {
            format!("unpinned-{}", self.slow.len())
        } else {
            format_cpu_list(&self.cores)
        }
    }

    /// Writes the measured ratios to the cache file (hybrid only; no-op without a cache).
    pub fn save(&self) -> std::io::Result<()> {
        match (&self.cache, self.kind) {
            (Some(path), SchedKind::Hybrid) => {
                let table = self.table.lock().expect("ratio table").clone();
                CacheFile::store(path, &self.cache_key(), &table)
            }
            _ => Ok(()),
        }
    }

    /// Slow factor of thread `thread` (1 = normal).
    fn slow_factor(&self, thread: usize) -> f64 {
        self.slow.get(thread).copied().unwrap_or(1.0)
    }

    /// Busy time of `thread` for items of total cost `work` that took `elapsed` of real time.
    fn busy_time(&self, thread: usize, work: f64, elapsed: Duration) -> Duration {
        match &self.clock {
            BusyClock::Real => elapsed,
            BusyClock::Model(model) => {
                let s = model(thread, work) * self.slow_factor(thread);
                Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
            }
        }
    }

    /// Runs `work` on `item`, then spins so that a slowed thread takes `factor`× as long.
    fn timed<S, T>(
        &self,
        thread: usize,
        work: &(dyn Fn(&mut S, &mut T) + Sync),
        s: &mut S,
        item: &mut T,
    ) {
        let factor = self.slow_factor(thread);
        if factor <= 1.0 || matches!(self.clock, BusyClock::Model(_)) {
            work(s, item);
            return;
        }
        let start = Instant::now();
        work(s, item);
        let until = start + start.elapsed().mul_f64(factor);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

impl Executor for Scheduler {
    fn threads(&self) -> usize {
        self.slow.len()
    }

    fn run<T: Send, S: Send>(
        &self,
        class: &str,
        items: &mut [T],
        cost: &(dyn Fn(&T) -> f64 + Sync),
        init: &(dyn Fn() -> S + Sync),
        work: &(dyn Fn(&mut S, &mut T) + Sync),
    ) -> Vec<S> {
        let n = self.threads();
        if self.kind == SchedKind::Rayon {
            let busy: Vec<Mutex<Duration>> = (0..n).map(|_| Mutex::new(Duration::ZERO)).collect();
            // The plain pool's work stealing, each item timed (and slowed) on its thread.
            let timed_work = |s: &mut S, item: &mut T| {
                let t = rayon::current_thread_index().unwrap_or(0);
                let start = Instant::now();
                self.timed(t, work, s, item);
                let took = self.busy_time(t, cost(item).max(0.0), start.elapsed());
                *busy[t % n].lock().expect("busy") += took;
            };
            let states = self.pool.run(class, items, cost, init, &timed_work);
            *self.last.lock().expect("call record") = CallRecord {
                class: class.to_string(),
                busy_s: busy
                    .iter()
                    .map(|b| b.lock().expect("busy").as_secs_f64())
                    .collect(),
                work: vec![0.0; n],
                updated: false,
            };
            return states;
        }
        let costs: Vec<f64> = items.iter().map(|i| cost(i).max(0.0)).collect();
        let ratios = match self.kind {
            SchedKind::Hybrid => self.ratios(class),
            _ => vec![1.0; n],
        };
        let ranges = split_by_cost(&costs, &ratios);
        // Hybrid steals the tail (steal.rs); not under a cost model, whose time is not the
        // real time that decides who runs out of work first.
        let steal = self.kind == SchedKind::Hybrid && matches!(self.clock, BusyClock::Real);
        let queue = SplitQueue::new(&ranges, &costs, steal);
        // One lock per item, only ever taken by the thread that claimed it from the queue.
        let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
        let results: Vec<(S, f64, f64)> = self.pool.broadcast(|ctx| {
            let t = ctx.index();
            let start = Instant::now();
            let (mut s, mut done) = (init(), 0.0);
            while let Some(i) = queue.next(t) {
                let mut item = cells[i].lock().expect("work item");
                self.timed(t, work, &mut s, &mut item);
                done += costs[i];
            }
            let took = self.busy_time(t, done, start.elapsed());
            (s, took.as_secs_f64(), done)
        });
        let busy: Vec<f64> = results.iter().map(|r| r.1).collect();
        let work_of: Vec<f64> = results.iter().map(|r| r.2).collect();
        let updated = self.kind == SchedKind::Hybrid
            && self
                .table
                .lock()
                .expect("ratio table")
                .update(class, &work_of, &busy);
        *self.last.lock().expect("call record") = CallRecord {
            class: class.to_string(),
            busy_s: busy,
            work: work_of,
            updated,
        };
        results.into_iter().map(|r| r.0).collect()
    }
}
