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
