//! The `mpi` backend (cargo feature `mpi`, crate `mpi` = rsmpi): one process per rank, started
//! by `mpirun`/`mpiexec`/`srun`.
//!
//! **Overlap.** MPICH progresses a nonblocking transfer only inside MPI calls, so a ring shift
//! posted by the compute thread would sit still while the kernel runs. Each rank therefore has a
//! dedicated communication thread: [`Comm::shift_start`] hands it the `Arc<KvBlock>` (no copy)
//! and returns; the thread exchanges the block with both neighbours (sending to `rank + 1`,
//! receiving from `rank − 1`) and polls the transfer to completion while the kernel computes;
//! [`Comm::shift_wait`] takes the received block from a channel. MPI is initialised with
//! `MPI_THREAD_MULTIPLE`, and the ring uses its own tags, so collectives of the compute thread
//! never match the ring's messages.
//!
//! **Wire format of a shift.** A header of `u64`s (origin, kv_heads, dim, k and v lengths, the
//! positions' runs) preceded by its length, then K and V as raw `f32` messages. Any buffer longer
//! than [`MAX_MESSAGE_ELEMS`] is split into several messages (MPI counts are `i32`); so are
//! the byte buffers of [`Comm::gather`] and [`Comm::broadcast`].
//!
//! **Failure.** [`Comm::abort`] prints `ringattn: error: rank R failed: REASON` and calls
//! `MPI_Abort` on the world communicator, so every rank of the job ends with a nonzero exit
//! instead of hanging in its next receive.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use mpi::datatype::{Equivalence, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Process, SimpleCommunicator};
use mpi::traits::*;
use mpi::{Count, Threading};

use crate::comm::{all_gather_via_root, Comm};
use crate::error::{Error, Result};
use half::slice::HalfFloatSliceExt;

use crate::kv_wire::{decode_header, encode_header, HEADER_FIXED};
use crate::tensor::{KvBlock, KvData};

/// Largest number of elements sent in one MPI message (MPI counts are `i32`); longer buffers
/// travel as several messages.
pub const MAX_MESSAGE_ELEMS: usize = 1 << 30;

/// Environment variable that lowers the message size limit below [`MAX_MESSAGE_ELEMS`]
/// (testing aid: small jobs then exercise the split of long buffers). Every rank of a job must
/// see the same value; invalid values are ignored.
pub const MAX_MESSAGE_ENV: &str = "RINGATTN_MPI_MAX_MESSAGE";

/// The message size limit in elements: [`MAX_MESSAGE_ELEMS`], or less by [`MAX_MESSAGE_ENV`].
pub fn max_message_elems() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var(MAX_MESSAGE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .map_or(MAX_MESSAGE_ELEMS, |n| n.min(MAX_MESSAGE_ELEMS))
    })
}

/// Tags of the ring shift and of the point-to-point gather (collectives use their own context).
const TAG_HEADER_LEN: i32 = 101;
const TAG_HEADER: i32 = 102;
const TAG_PAYLOAD: i32 = 103;
const TAG_GATHER_LEN: i32 = 201;
const TAG_GATHER_DATA: i32 = 202;

/// Polls of a transfer that spin (yielding the core) before the thread starts to sleep between
/// polls; the sleep keeps an idle communication thread from stealing a kernel thread's core.
const SPIN_POLLS: u32 = 64;
/// Sleep between polls of a long transfer.
const POLL_SLEEP: Duration = Duration::from_micros(50);

/// Pause between printing an abort message and `MPI_Abort`, so the launcher forwards it.
const ABORT_GRACE: Duration = Duration::from_millis(200);

/// One rank's end of an MPI job. Dropping it stops the communication thread and finalises MPI.
pub struct MpiComm {
    rank: usize,
    size: usize,
    node_ranks: usize,
    node_rank: usize,
    node_id: u64,
    to_thread: Option<Sender<Arc<KvBlock>>>,
    from_thread: Receiver<Result<KvBlock>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
    /// Finalises MPI when dropped (after the communication thread has been joined).
    _universe: Universe,
}

impl MpiComm {
    /// [`Comm::abort`] with the exit code the job ends with (`MPI_Abort`'s error code, which
    /// mpirun passes on): 2 when the rank failed on bad input, so that a job refused under MPI
    /// exits as the local backend does. Prints `ringattn: error: rank R failed: REASON` first.
    pub fn abort_with_code(&self, reason: &str, code: i32) -> ! {
        // One write (stderr is unbuffered: `eprintln!` may split the line), then a moment for
        // the launcher to forward it before MPI_Abort makes it kill every process.
        let line = format!("ringattn: error: rank {} failed: {reason}\n", self.rank);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        drop(err);
        thread::sleep(ABORT_GRACE);
        world().abort(code)
    }

    /// Initialises MPI with `MPI_THREAD_MULTIPLE` and starts this rank's communication thread.
    /// Fails (no panic) when MPI is already initialised or gives a lower threading level.
    pub fn init() -> Result<MpiComm> {
        let (universe, provided) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or_else(|| Error::Comm {
                rank: 0,
                reason: "MPI was already initialised in this process".into(),
            })?;
        let world = universe.world();
        let rank = usize::try_from(world.rank()).unwrap_or(0);
        let size = usize::try_from(world.size()).unwrap_or(1).max(1);
        if provided != Threading::Multiple {
            return Err(Error::Comm {
                rank,
                reason: format!(
                    "the MPI library provides thread level {provided:?}, ringattn needs Multiple \
                     (MPI_THREAD_MULTIPLE) for its communication thread; use an MPI built with \
                     thread support (MPICH and OpenMPI packages are)"
                ),
            });
        }
        // Ranks sharing this node (a collective call: every rank makes it here), this rank's
        // place among them, and the node's name: the world rank of its first rank.
        let shared = world.split_shared(0);
        let node_ranks = usize::try_from(shared.size()).unwrap_or(1);
        let node_rank = usize::try_from(shared.rank()).unwrap_or(0);
        let mut leader = [rank as u64];
        shared.process_at_rank(0).broadcast_into(&mut leader[..]);
        drop(shared);
        let (to_thread, requests) = bounded::<Arc<KvBlock>>(1);
        let (results, from_thread) = bounded::<Result<KvBlock>>(1);
        let thread = thread::Builder::new()
            .name(format!("ringattn-mpi-{rank}"))
            .spawn(move || comm_thread(rank, size, requests, results))
            .map_err(|e| Error::Comm {
                rank,
                reason: format!("cannot start the communication thread: {e}"),
            })?;
        Ok(MpiComm {
            rank,
            size,
            node_ranks,
            node_rank,
            node_id: leader[0],
            to_thread: Some(to_thread),
            from_thread,
            thread: Some(thread),
            in_flight: false,
            _universe: universe,
        })
    }

    /// Number of ranks of this job running on this node (sharing its memory and cores).
    pub fn node_ranks(&self) -> usize {
        self.node_ranks
    }

    /// This rank's place among the ranks of its node, `0..node_ranks()` (in world rank order).
    pub fn node_rank(&self) -> usize {
        self.node_rank
    }

    /// Names this rank's node: the world rank of the node's first rank (equal on every rank of
    /// the node, different between nodes).
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    fn comm_err(&self, reason: impl Into<String>) -> Error {
        Error::Comm {
            rank: self.rank,
            reason: reason.into(),
        }
    }
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop; join it before MPI_Finalize.
        self.to_thread.take();
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn shift_start(&mut self, block: Arc<KvBlock>) -> Result<()> {
        if self.in_flight {
            return Err(self.comm_err("shift_start while a shift is already in flight"));
        }
        let sender = self
            .to_thread
            .as_ref()
            .ok_or_else(|| self.comm_err("the communication thread has stopped"))?;
        sender
            .send(block)
            .map_err(|_| self.comm_err("the communication thread has stopped"))?;
        self.in_flight = true;
        Ok(())
    }

    fn shift_wait(&mut self) -> Result<Arc<KvBlock>> {
        if !self.in_flight {
            return Err(self.comm_err("shift_wait without a shift in flight"));
        }
        self.in_flight = false;
        let block = self
            .from_thread
            .recv()
            .map_err(|_| self.comm_err("the communication thread exited during a shift"))??;
        Ok(Arc::new(block))
    }

    fn gather(&mut self, root: usize, data: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>> {
        if root >= self.size {
            return Err(self.comm_err(format!("gather root {root} outside the world")));
        }
        if self.rank != root {
            let world = world();
            let to_root = world.process_at_rank(to_rank(root));
            to_root.send_with_tag(&[data.len() as u64][..], TAG_GATHER_LEN);
            for chunk in data.chunks(max_message_elems()) {
                to_root.send_with_tag(chunk, TAG_GATHER_DATA);
            }
            return Ok(None);
        }
        let world = world();
        let mut own = Some(data);
        let mut parts = Vec::with_capacity(self.size);
        for src in 0..self.size {
            if src == root {
                parts.push(own.take().unwrap_or_default());
                continue;
            }
            let from = world.process_at_rank(to_rank(src));
            let mut len = [0u64; 1];
            from.receive_into_with_tag(&mut len[..], TAG_GATHER_LEN);
            let len = usize::try_from(len[0])
                .map_err(|_| self.comm_err(format!("rank {src} announced {} bytes", len[0])))?;
            let mut buf = vec![0u8; len];
            for chunk in buf.chunks_mut(max_message_elems()) {
                from.receive_into_with_tag(chunk, TAG_GATHER_DATA);
            }
            parts.push(buf);
        }
        Ok(Some(parts))
    }

    fn broadcast(&mut self, root: usize, data: Vec<u8>) -> Result<Vec<u8>> {
        if root >= self.size {
            return Err(self.comm_err(format!("broadcast root {root} outside the world")));
        }
        let world = world();
        let from = world.process_at_rank(to_rank(root));
        let mut len = [data.len() as u64];
        from.broadcast_into(&mut len[..]);
        let mut buf = if self.rank == root {
            data
        } else {
            let len = usize::try_from(len[0])
                .map_err(|_| self.comm_err(format!("root announced {} bytes", len[0])))?;
            vec![0u8; len]
        };
        for chunk in buf.chunks_mut(max_message_elems()) {
            from.broadcast_into(chunk);
        }
        Ok(buf)
    }

    /// `MPI_Allgather` of the lengths, then one `MPI_Allgatherv` of the bytes; parts longer in
    /// all than [`max_message_elems`] go through [`all_gather_via_root`] (split messages).
    fn all_gather(&mut self, data: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        let world = world();
        let mut lens = vec![0u64; self.size];
        world.all_gather_into(&[data.len() as u64][..], &mut lens[..]);
        let lens: Vec<usize> = lens
            .iter()
            .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
            .collect();
        let total = lens.iter().try_fold(0usize, |a, &n| a.checked_add(n));
        let Some(total) = total.filter(|&t| t <= max_message_elems()) else {
            return all_gather_via_root(self, data);
        };
        let counts: Vec<Count> = lens.iter().map(|&n| n as Count).collect();
        let displs: Vec<Count> = counts
            .iter()
            .scan(0, |at, &n| {
                let d = *at;
                *at += n;
                Some(d)
            })
            .collect();
        let mut buf = vec![0u8; total];
        {
            let mut parts = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            world.all_gather_varcount_into(&data[..], &mut parts);
        }
        let mut rest = &buf[..];
        Ok(lens
            .iter()
            .map(|&n| {
                let (part, tail) = rest.split_at(n);
                rest = tail;
                part.to_vec()
            })
            .collect())
    }

    fn barrier(&mut self) -> Result<()> {
        world().barrier();
        Ok(())
    }

    fn abort(&self, reason: &str) {
        self.abort_with_code(reason, 1)
    }
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

fn to_rank(rank: usize) -> i32 {
    i32::try_from(rank).unwrap_or(i32::MAX)
}

/// The communication thread: one ring exchange per block handed over, until the channel closes.
fn comm_thread(
    rank: usize,
    size: usize,
    requests: Receiver<Arc<KvBlock>>,
    results: Sender<Result<KvBlock>>,
) {
    let world = world();
    let next = world.process_at_rank(to_rank((rank + 1) % size));
    let prev = world.process_at_rank(to_rank((rank + size - 1) % size));
    while let Ok(block) = requests.recv() {
        let received = exchange(rank, &next, &prev, &block);
        drop(block);
        if results.send(received).is_err() {
            break;
        }
    }
}

/// Sends `block` to `next` and receives `prev`'s block: header length, header, then K and V.
/// Every phase is nonblocking and polled (see [`poll_exchange`]), so a rank whose neighbour is
/// still computing does not spin a core away from that neighbour's kernel on a shared node.
fn exchange(
    rank: usize,
    next: &Process<'_>,
    prev: &Process<'_>,
    block: &KvBlock,
) -> Result<KvBlock> {
    let header = encode_header(block);
    let mut their_len = [0u64; 1];
    poll_exchange(
        next,
        prev,
        [&[header.len() as u64][..]],
        [&mut their_len[..]],
        TAG_HEADER_LEN,
    );
    let bad = |reason: String| Error::Comm { rank, reason };
    let their_len = usize::try_from(their_len[0])
        .ok()
        .filter(|n| (HEADER_FIXED..=MAX_MESSAGE_ELEMS).contains(n))
        .ok_or_else(|| bad(format!("bad KV header length {}", their_len[0])))?;
    let mut their_header = vec![0u64; their_len];
    poll_exchange(
        next,
        prev,
        [&header[..]],
        [&mut their_header[..]],
        TAG_HEADER,
    );
    let mut received = decode_header(&their_header).map_err(|e| bad(e.to_string()))?;
    match (&block.k, &block.v, &mut received.k, &mut received.v) {
        (KvData::F32(k), KvData::F32(v), KvData::F32(rk), KvData::F32(rv)) => poll_exchange(
            next,
            prev,
            [&k[..], &v[..]],
            [&mut rk[..], &mut rv[..]],
            TAG_PAYLOAD,
        ),
        // MPI has no bf16 type: bf16 travels as its u16 bits.
        (KvData::Bf16(k), KvData::Bf16(v), KvData::Bf16(rk), KvData::Bf16(rv)) => poll_exchange(
            next,
            prev,
            [k.reinterpret_cast(), v.reinterpret_cast()],
            [rk.reinterpret_cast_mut(), rv.reinterpret_cast_mut()],
            TAG_PAYLOAD,
        ),
        _ => {
            return Err(bad(
                "K and V of a block (or of the two neighbours) differ in dtype".into(),
            ))
        }
    }
    Ok(received)
}

/// Sends each buffer of `send` to `next` and receives each buffer of `recv` from `prev` (in
/// order, every buffer split at [`max_message_elems`]), as nonblocking operations polled to
/// completion: spinning (yielding the core) briefly, then sleeping between polls.
fn poll_exchange<T: Equivalence, const N: usize>(
    next: &Process<'_>,
    prev: &Process<'_>,
    send: [&[T]; N],
    recv: [&mut [T]; N],
    tag: i32,
) {
    let limit = max_message_elems();
    let messages: usize = send
        .iter()
        .map(|b| b.len().div_ceil(limit))
        .chain(recv.iter().map(|b| b.len().div_ceil(limit)))
        .sum();
    mpi::request::multiple_scope(messages, |scope, requests| {
        // Same tag for every message of a phase: MPI keeps their order between two ranks.
        for buf in recv {
            for chunk in buf.chunks_mut(limit) {
                requests.add(prev.immediate_receive_into_with_tag(scope, chunk, tag));
            }
        }
        for buf in send {
            for chunk in buf.chunks(limit) {
                requests.add(next.immediate_send_with_tag(scope, chunk, tag));
            }
        }
        let mut done = Vec::new();
        let mut polls = 0u32;
        while !requests.test_all(&mut done) {
            polls = polls.saturating_add(1);
            if polls < SPIN_POLLS {
                thread::yield_now();
            } else {
                thread::sleep(POLL_SLEEP);
            }
        }
    });
}
