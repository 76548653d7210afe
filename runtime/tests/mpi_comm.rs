//! The MPI `Comm` under a real `mpirun -n 3` (feature `mpi`; a test without the libtest
//! harness): ring shifts of uneven blocks, gather and broadcast with a non-zero root and
//! multi-message buffers, the all-gather (native and, past the message limit, via rank 0), barrier, the log-sum-exp all-reduce, and misuse errors.
//!
//! Run by `cargo test`, this binary starts itself under `mpirun` (or `mpiexec`) with
//! `RINGATTN_MPI_COMM_CHILD` set; each child is one rank and panics (nonzero exit, which ends
//! the job) on any mismatch. Without an MPI launcher it prints a note and passes, except in CI
//! (`CI=true`), where it fails.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringattn_runtime::mpi_backend::{MpiComm, MAX_MESSAGE_ENV};
use ringattn_runtime::{AttnState, Comm, KvBlock, KvData, Positions};

const CHILD_ENV: &str = "RINGATTN_MPI_COMM_CHILD";
const RANKS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        rank_main();
    } else {
        launch();
    }
}

/// Starts `RANKS` copies of this binary under the MPI launcher and checks they all succeed.
fn launch() {
    let Some((mpirun, extra)) = ringattn_testutil::mpi::mpi_launcher() else {
        return;
    };
    let mut cmd = Command::new(&mpirun);
    if !extra.is_empty() {
        // Open MPI: root, oversubscription, and the environment passed on explicitly.
        cmd.args(extra);
        cmd.args(["-x", CHILD_ENV, "-x", MAX_MESSAGE_ENV]);
    }
    let exe = std::env::current_exe().expect("path of this test binary");
    cmd.args(["-n", &RANKS.to_string()])
        .arg(exe)
        .env(CHILD_ENV, "1")
        // Small messages, so that every buffer below travels as several.
        .env(MAX_MESSAGE_ENV, "1000")
        .stdin(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("starting mpirun");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for mpirun") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpirun -n {RANKS} did not finish within {DEADLINE:?} (hang?)");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "a rank failed: {status}");
    println!("mpi_comm: {RANKS} ranks passed in {:?}", start.elapsed());
}

/// A block of `rows` rows at positions `10·origin + ..`, with values that name their origin.
fn block(origin: usize, rows: usize) -> KvBlock {
    let (kv_heads, dim) = (2, 3);
    let n = kv_heads * rows * dim;
    KvBlock {
        origin,
        kv_heads,
        dim,
        positions: Positions::strided(1000 * origin, rows, origin + 1),
        k: KvData::F32((0..n).map(|i| (origin * 100_000 + i) as f32).collect()),
        v: KvData::F32((0..n).map(|i| -((origin * 100_000 + i) as f32)).collect()),
    }
}

/// Rows of rank `r`'s block: uneven, and long enough to need several 1000-element messages.
fn rows_of(rank: usize) -> usize {
    400 + 37 * rank
}

fn rank_main() {
    let mut c = MpiComm::init().expect("MPI init with MPI_THREAD_MULTIPLE");
    let (rank, size) = (c.rank(), c.size());
    assert_eq!(size, RANKS);
    assert_eq!(c.backend(), "mpi");
    assert!(c.node_ranks() >= 1);

    // Misuse is an error, not a hang.
    assert!(c.shift_wait().is_err());

    // A full trip around the ring: after `size` shifts every rank holds its own block again.
    let mut current = Arc::new(block(rank, rows_of(rank)));
    for step in 1..=size {
        c.shift_start(Arc::clone(&current)).unwrap();
        if step == 1 {
            assert!(c.shift_start(Arc::clone(&current)).is_err());
        }
        let got = c.shift_wait().unwrap();
        let origin = (rank + size * step - step) % size;
        assert_eq!(
            *got,
            block(origin, rows_of(origin)),
            "rank {rank} step {step}"
        );
        current = got;
    }

    // Gather to a non-zero root, variable lengths (rank 0 sends nothing).
    let mine: Vec<u8> = (0..rank * 2500)
        .map(|i| (i % 251) as u8 ^ rank as u8)
        .collect();
    let gathered = c.gather(2, mine.clone()).unwrap();
    assert_eq!(gathered.is_some(), rank == 2);
    if let Some(parts) = gathered {
        for (r, part) in parts.iter().enumerate() {
            let expect: Vec<u8> = (0..r * 2500).map(|i| (i % 251) as u8 ^ r as u8).collect();
            assert_eq!(part, &expect, "gathered part of rank {r}");
        }
    }

    // Broadcast from a non-zero root; the others pass buffers of other lengths.
    let data = if rank == 1 {
        (0..4321).map(|i| (i % 7) as u8).collect()
    } else {
        vec![9; rank]
    };
    let got = c.broadcast(1, data).unwrap();
    assert_eq!(got, (0..4321).map(|i| (i % 7) as u8).collect::<Vec<u8>>());
    c.barrier().unwrap();

    // All-gather: every part on every rank in rank order; small parts (one MPI_Allgatherv)
    // and parts longer in all than the 1000-element message limit (gather + broadcast).
    for scale in [1, 500] {
        let part =
            |r: usize| -> Vec<u8> { (0..r * scale).map(|i| (i % 13) as u8 + r as u8).collect() };
        let parts = c.all_gather(part(rank)).unwrap();
        let want: Vec<Vec<u8>> = (0..size).map(part).collect();
        assert_eq!(parts, want, "all-gather, {scale} bytes a rank step");
    }

    // The log-sum-exp reduction leaves the merged state on every rank.
    let mut s = AttnState::new(1, 1, 1);
    s.m[0] = rank as f32;
    s.l[0] = 1.0;
    s.acc[0] = rank as f32;
    c.all_reduce_state(&mut s).unwrap();
    let expect_l: f32 = (0..size)
        .map(|r| (r as f32 - (size - 1) as f32).exp())
        .sum();
    assert_eq!(s.m[0], (size - 1) as f32);
    assert!((s.l[0] - expect_l).abs() < 1e-6, "{} vs {expect_l}", s.l[0]);

    assert!(c.gather(size, Vec::new()).is_err());
    c.barrier().unwrap();
}
