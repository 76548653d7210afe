//! The one communication interface every backend implements.
//!
//! A ring pass needs only a non-blocking shift (start sending my block to the next rank, wait
//! for the previous rank's block); reports and decode need a few collectives. A failure on one
//! rank must end the whole job: [`Comm::abort`] records who failed and every blocked call on
//! every other rank returns [`Error::Aborted`] naming that rank, never hangs.

use std::sync::Arc;

use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::state::AttnState;
use crate::tensor::KvBlock;

/// Rank-to-rank communication for one job.
pub trait Comm: Send {
    /// This worker's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of workers in the ring.
    fn size(&self) -> usize;
    /// Backend name as written in reports (`local`, `mpi`).
    fn backend(&self) -> &'static str;
    /// Starts sending `block` to rank `(rank + 1) % size` and returns at once; the transfer
    /// progresses while the caller computes.
    fn shift_start(&mut self, block: Arc<KvBlock>) -> Result<()>;
    /// Waits for the block sent by rank `(rank − 1) % size`.
    fn shift_wait(&mut self) -> Result<Arc<KvBlock>>;
    /// Collects every rank's bytes on `root` (in rank order); other ranks get `None`.
    fn gather(&mut self, root: usize, data: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>>;
    /// Sends `data` from `root` to every rank; every rank returns root's bytes.
    fn broadcast(&mut self, root: usize, data: Vec<u8>) -> Result<Vec<u8>>;
    /// Every rank's bytes on every rank, in rank order (an all-gather). Tensor-parallel decode
    /// needs it: each rank computes a slice of a vector (a range of a projection's output
    /// features) that every rank then needs whole. The default is [`all_gather_via_root`]
    /// (a gather on rank 0, then one broadcast); backends override it with one exchange.
    fn all_gather(&mut self, data: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        all_gather_via_root(self, data)
    }
    /// Returns once every rank has reached the barrier.
    fn barrier(&mut self) -> Result<()> {
        self.gather(0, Vec::new())?;
        self.broadcast(0, Vec::new())?;
        Ok(())
    }
    /// Merges every rank's partial state (same rows, disjoint keys) by log-sum-exp, in rank
    /// order, and leaves the merged state on every rank (tree-style decoding's reduction).
    fn all_reduce_state(&mut self, state: &mut AttnState) -> Result<()> {
        let rank = self.rank();
        let encode = |s: &AttnState| {
            bincode::serde::encode_to_vec(s, bincode::config::standard()).map_err(|e| Error::Comm {
                rank,
                reason: format!("encoding state: {e}"),
            })
        };
        let decode = |b: &[u8]| -> Result<AttnState> {
            bincode::serde::decode_from_slice(b, bincode::config::standard())
                .map(|(s, _)| s)
                .map_err(|e| Error::Comm {
                    rank,
                    reason: format!("decoding state: {e}"),
                })
        };
        let gathered = self.gather(0, encode(state)?)?;
        let merged = match gathered {
            Some(parts) => {
                let mut acc = decode(&parts[0])?;
                for part in &parts[1..] {
                    acc.merge(&decode(part)?);
                }
                encode(&acc)?
            }
            None => Vec::new(),
        };
        *state = decode(&self.broadcast(0, merged)?)?;
        Ok(())
    }
    /// Ends the job on every rank: records that this rank failed with `reason`.
    fn abort(&self, reason: &str);
    /// The job's abort, when some rank has aborted and this backend can see it without
    /// blocking ([`Error::Aborted`] naming the first failing rank); `None` otherwise. The ring
    /// pass checks it between steps.
    fn aborted(&self) -> Option<Error> {
        None
    }
    /// A flag raised when any rank aborts, for checks between kernel work items (see
    /// [`Cancellable`](crate::cancel::Cancellable)). Backends that cannot see a remote abort
    /// without communicating return [`CancelToken::never`].
    fn cancel_token(&self) -> CancelToken {
        CancelToken::never()
    }
}

/// [`Comm::all_gather`] from [`Comm::gather`] on rank 0 and one [`Comm::broadcast`] of every
/// part, each preceded by its length as a little-endian `u64` (what a backend without a
/// native all-gather, or one whose parts are too long for it, uses).
pub fn all_gather_via_root<C: Comm + ?Sized>(comm: &mut C, data: Vec<u8>) -> Result<Vec<Vec<u8>>> {
    let packed = match comm.gather(0, data)? {
        Some(parts) => {
            let total: usize = parts.iter().map(|p| 8 + p.len()).sum();
            let mut buf = Vec::with_capacity(total);
            for p in &parts {
                buf.extend_from_slice(&(p.len() as u64).to_le_bytes());
                buf.extend_from_slice(p);
            }
            buf
        }
        None => Vec::new(),
    };
    let buf = comm.broadcast(0, packed)?;
    let (rank, size) = (comm.rank(), comm.size());
    let bad = |reason: &str| Error::Comm {
        rank,
        reason: format!("all-gather: {reason}"),
    };
    let mut parts = Vec::with_capacity(size);
    let mut rest = &buf[..];
    for _ in 0..size {
        let (len, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("message ends inside a length"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|&n| n <= tail.len())
            .ok_or_else(|| bad("a part runs past the end of the message"))?;
        parts.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(bad("bytes left after the last part"));
    }
    Ok(parts)
}
