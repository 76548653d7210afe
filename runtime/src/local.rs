//! The `local` backend: workers are threads of one process joined by crossbeam channels.
//!
//! KV blocks travel as `Arc`s, so a shift moves a pointer and never copies the buffers. A ring
//! shift is non-blocking by construction (unbounded channel send); waits poll a shared abort
//! flag so that a failing rank ends every other rank's wait within milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use crate::cancel::CancelToken;
use crate::comm::Comm;
use crate::error::{Error, Result};
use crate::tensor::KvBlock;

/// How often a blocked wait looks at the abort flag.
const ABORT_POLL: Duration = Duration::from_millis(10);

/// The first failure of the job: (rank, reason), and a flag raised with it that kernels poll
/// between work items.
struct AbortFlag {
    first: Mutex<Option<(usize, String)>>,
    token: CancelToken,
}

impl AbortFlag {
    fn new() -> Self {
        AbortFlag {
            first: Mutex::new(None),
            token: CancelToken::new(),
        }
    }
    fn get(&self) -> Option<(usize, String)> {
        if !self.token.is_cancelled() {
            return None;
        }
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, rank: usize, reason: &str) {
        let mut slot = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some((rank, reason.to_string()));
        }
        self.token.cancel();
    }
}

/// One rank's end of the in-process world.
pub struct LocalComm {
    rank: usize,
    size: usize,
    next: Sender<Arc<KvBlock>>,
    prev: Receiver<Arc<KvBlock>>,
    /// `to[dst]`: bytes from this rank to `dst`.
    to: Vec<Sender<Vec<u8>>>,
    /// `from[src]`: bytes from `src` to this rank.
    from: Vec<Receiver<Vec<u8>>>,
    abort: Arc<AbortFlag>,
}

/// Creates the `size` connected ends of an in-process world, one per worker thread.
pub fn local_world(size: usize) -> Vec<LocalComm> {
    let abort = Arc::new(AbortFlag::new());
    let ring: Vec<_> = (0..size).map(|_| unbounded()).collect();
    // mesh[src][dst]
    let mesh: Vec<Vec<_>> = (0..size)
        .map(|_| (0..size).map(|_| unbounded()).collect())
        .collect();
    (0..size)
        .map(|rank| LocalComm {
            rank,
            size,
            // Channel `r` carries blocks into rank r.
            next: ring[(rank + 1) % size].0.clone(),
            prev: ring[rank].1.clone(),
            to: (0..size).map(|dst| mesh[rank][dst].0.clone()).collect(),
            from: (0..size).map(|src| mesh[src][rank].1.clone()).collect(),
            abort: abort.clone(),
        })
        .collect()
}

impl LocalComm {
    fn recv<T>(&self, rx: &Receiver<T>, what: &str) -> Result<T> {
        loop {
            if let Some((rank, reason)) = self.abort.get() {
                return Err(Error::Aborted { rank, reason });
            }
            match rx.recv_timeout(ABORT_POLL) {
                Ok(v) => return Ok(v),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some((rank, reason)) = self.abort.get() {
                        return Err(Error::Aborted { rank, reason });
                    }
                    return Err(Error::Comm {
                        rank: self.rank,
                        reason: format!("peer exited while rank {} waited for {what}", self.rank),
                    });
                }
            }
        }
    }

    fn send<T>(&self, tx: &Sender<T>, value: T, what: &str) -> Result<()> {
        tx.send(value).map_err(|_| match self.abort.get() {
            Some((rank, reason)) => Error::Aborted { rank, reason },
            None => Error::Comm {
                rank: self.rank,
                reason: format!("peer exited before receiving {what}"),
            },
        })
    }
}

impl Comm for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn backend(&self) -> &'static str {
        "local"
    }

    fn shift_start(&mut self, block: Arc<KvBlock>) -> Result<()> {
        self.send(&self.next, block, "a KV block")
    }

    fn shift_wait(&mut self) -> Result<Arc<KvBlock>> {
        self.recv(&self.prev, "a KV block")
    }

    fn gather(&mut self, root: usize, data: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>> {
        if self.rank != root {
            self.send(&self.to[root], data, "gather data")?;
            return Ok(None);
        }
        let mut own = Some(data);
        let mut parts = Vec::with_capacity(self.size);
        for src in 0..self.size {
            if src == root {
                parts.push(own.take().unwrap_or_default());
            } else {
                parts.push(self.recv(&self.from[src], "gather data")?);
            }
        }
        Ok(Some(parts))
    }

    fn broadcast(&mut self, root: usize, data: Vec<u8>) -> Result<Vec<u8>> {
        if self.rank == root {
            for dst in (0..self.size).filter(|&d| d != root) {
                self.send(&self.to[dst], data.clone(), "broadcast data")?;
            }
            Ok(data)
        } else {
            self.recv(&self.from[root], "broadcast data")
        }
    }

    /// One exchange: every rank sends its bytes to every other rank, then takes theirs.
    fn all_gather(&mut self, data: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        for dst in (0..self.size).filter(|&d| d != self.rank) {
            self.send(&self.to[dst], data.clone(), "all-gather data")?;
        }
        let mut own = Some(data);
        let mut parts = Vec::with_capacity(self.size);
        for src in 0..self.size {
            if src == self.rank {
                parts.push(own.take().unwrap_or_default());
            } else {
                parts.push(self.recv(&self.from[src], "all-gather data")?);
            }
        }
        Ok(parts)
    }

    fn abort(&self, reason: &str) {
        self.abort.set(self.rank, reason);
    }

    fn aborted(&self) -> Option<Error> {
        self.abort
            .get()
            .map(|(rank, reason)| Error::Aborted { rank, reason })
    }

    fn cancel_token(&self) -> CancelToken {
        self.abort.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::Positions;
    use crate::state::AttnState;
    use crate::tensor::KvData;
    use std::thread;
    use std::time::Instant;

    fn block(origin: usize) -> KvBlock {
        KvBlock {
            origin,
            kv_heads: 1,
            dim: 1,
            positions: Positions::contiguous(origin, 1),
            k: KvData::F32(vec![origin as f32]),
            v: KvData::F32(vec![0.0]),
        }
    }

    #[test]
    fn shift_moves_blocks_around_the_ring_without_copying() {
        let comms = local_world(3);
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut c| {
                thread::spawn(move || {
                    let mine = Arc::new(block(c.rank()));
                    let ptr = Arc::as_ptr(&mine) as usize;
                    c.shift_start(mine).unwrap();
                    let got = c.shift_wait().unwrap();
                    (c.rank(), got.origin, ptr, Arc::as_ptr(&got) as usize)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for &(rank, origin, _, got_ptr) in &results {
            assert_eq!(origin, (rank + 2) % 3);
            // The received Arc points at the sender's allocation: moved, not copied.
            assert_eq!(got_ptr, results[origin].2);
        }
    }

    #[test]
    fn collectives_gather_broadcast_and_reduce_states() {
        let comms = local_world(4);
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut c| {
                thread::spawn(move || {
                    let g = c.gather(2, vec![c.rank() as u8]).unwrap();
                    let b = c.broadcast(1, vec![c.rank() as u8 * 10]).unwrap();
                    c.barrier().unwrap();
                    let mut s = AttnState::new(1, 1, 1);
                    s.m[0] = c.rank() as f32;
                    s.l[0] = 1.0;
                    s.acc[0] = c.rank() as f32;
                    c.all_reduce_state(&mut s).unwrap();
                    (c.rank(), g, b, s)
                })
            })
            .collect();
        for h in handles {
            let (rank, g, b, s) = h.join().unwrap();
            assert_eq!(g.is_some(), rank == 2);
            if let Some(parts) = g {
                assert_eq!(parts, vec![vec![0], vec![1], vec![2], vec![3]]);
            }
            assert_eq!(b, vec![10]);
            let expect_l: f32 = (0..4).map(|r| (r as f32 - 3.0).exp()).sum();
            assert_eq!(s.m[0], 3.0);
            assert!((s.l[0] - expect_l).abs() < 1e-6);
        }
    }

    /// The native all-gather and the one built from gather + broadcast give every rank every
    /// part, in rank order, for parts of different lengths (one empty), twice in a row.
    #[test]
    fn all_gather_gives_every_rank_every_part_in_rank_order() {
        let comms = local_world(3);
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut c| {
                thread::spawn(move || {
                    let mine: Vec<u8> = (0..c.rank() as u8 * 2)
                        .map(|i| 10 * c.rank() as u8 + i)
                        .collect();
                    let native = c.all_gather(mine.clone()).unwrap();
                    let via_root = crate::comm::all_gather_via_root(&mut c, mine).unwrap();
                    (native, via_root)
                })
            })
            .collect();
        let want = vec![vec![], vec![10, 11], vec![20, 21, 22, 23]];
        for h in handles {
            let (native, via_root) = h.join().unwrap();
            assert_eq!(native, want);
            assert_eq!(via_root, want);
        }
    }

    #[test]
    fn abort_ends_every_wait_naming_the_rank() {
        let comms = local_world(3);
        let start = Instant::now();
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut c| {
                thread::spawn(move || {
                    if c.rank() == 1 {
                        c.abort("boom");
                        return None;
                    }
                    Some(c.shift_wait().unwrap_err())
                })
            })
            .collect();
        for h in handles {
            if let Some(err) = h.join().unwrap() {
                assert!(matches!(err, Error::Aborted { rank: 1, .. }), "{err}");
            }
        }
        // A hang guard only (the wake-up takes microseconds).
        assert!(start.elapsed() < Duration::from_secs(60));
    }
}
