//! A grid of kernel shapes (`ringattn bench kernel`): every combination of threads, head
//! dimensions, lengths, masks and storage types of one head shape, checked before any runs,
//! measured one by one beside the FMA peak of the same threads (measured once per thread
//! count).

use ringattn_runtime::{Dtype, Isa, Result, TileShape};

use super::kernel::{measure_kernel, parallel_peak, work, KernelResult, KernelShape};
use crate::error::{nonzero, ApiError};
use crate::sched_spec::SchedSpec;

/// The grid: lists vary, the rest is shared by every shape.
#[derive(Clone, Debug)]
pub struct KernelGrid {
    /// Micro-kernels.
    pub isa: Isa,
    /// Sequence lengths.
    pub seqs: Vec<usize>,
    /// Head dimensions.
    pub dims: Vec<usize>,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// Masks (`false` non-causal, `true` causal).
    pub causal: Vec<bool>,
    /// K/V storage types.
    pub dtypes: Vec<Dtype>,
    /// Query heads.
    pub heads: usize,
    /// KV heads (divides `heads`).
    pub kv_heads: usize,
    /// Kernel tile shape.
    pub tile: TileShape,
    /// Timed runs per shape (the median is reported).
    pub repeats: usize,
}

impl KernelGrid {
    /// Checks every size (fields `seq`, `head_dim`, `threads`, `heads`, `kv_heads`, `repeats`,
    /// `tile.q`, `tile.k`), the GQA grouping and that the largest shape fits in memory.
    pub fn validate(&self) -> std::result::Result<(), ApiError> {
        let least = |v: &[usize]| v.iter().copied().min().unwrap_or(0);
        nonzero(&[
            ("seq", least(&self.seqs)),
            ("head_dim", least(&self.dims)),
            ("threads", least(&self.threads)),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("repeats", self.repeats),
            ("tile.q", self.tile.q),
            ("tile.k", self.tile.k),
        ])?;
        let most_threads = self.threads.iter().copied().max().unwrap_or(1);
        for &seq in &self.seqs {
            for &dim in &self.dims {
                let kernel = (most_threads, self.tile.q, self.tile.k);
                super::check_one_rank_memory(seq, self.heads, self.kv_heads, dim, kernel)?;
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ApiError::HeadsNotMultiple {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
        Ok(())
    }

    /// Every shape, in run order: threads, then head dimensions, lengths, masks, types.
    pub fn shapes(&self) -> Vec<KernelShape> {
        let mut out = Vec::new();
        for &threads in &self.threads {
            for &dim in &self.dims {
                for &seq in &self.seqs {
                    for &causal in &self.causal {
                        for &dtype in &self.dtypes {
                            out.push(KernelShape {
                                isa: self.isa,
                                heads: self.heads,
                                kv_heads: self.kv_heads,
                                threads,
                                dim,
                                seq,
                                causal,
                                dtype,
                                tile: self.tile,
                                repeats: self.repeats,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The thread counts to run when none are given: 1 and all `allowed_cores`.
    pub fn default_threads(allowed_cores: usize) -> Vec<usize> {
        let mut t = vec![1, allowed_cores.max(1)];
        t.dedup();
        t
    }

    /// Work of the whole grid in progress units (the sum of [`KernelGrid::work`]).
    pub fn total_work(&self) -> u64 {
        self.shapes().iter().map(KernelGrid::work).sum()
    }

    /// Work of one shape in progress units (its FLOP count × repeats).
    pub fn work(shape: &KernelShape) -> u64 {
        work(shape.seq, shape.dim, shape.causal) * shape.repeats as u64
    }

    /// Measures every shape under `sched` (validated first); `on_result` gets each result as
    /// it comes (so an interrupted grid keeps what it measured), `starting` each shape before.
    pub fn run(
        &self,
        sched: &SchedSpec,
        starting: &mut dyn FnMut(&KernelShape),
        on_result: &mut dyn FnMut(&KernelShape, &KernelResult) -> Result<()>,
    ) -> std::result::Result<(), ApiError> {
        self.validate()?;
        let mut peaks = std::collections::HashMap::new();
        for shape in self.shapes() {
            starting(&shape);
            let peak = *peaks
                .entry(shape.threads)
                .or_insert_with(|| parallel_peak(self.isa, shape.threads));
            let result = measure_kernel(&shape, sched, peak)?;
            on_result(&shape, &result)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> KernelGrid {
        KernelGrid {
            isa: Isa::Portable,
            seqs: vec![32, 64],
            dims: vec![8],
            threads: vec![1],
            causal: vec![false, true],
            dtypes: vec![Dtype::F32],
            heads: 2,
            kv_heads: 1,
            tile: TileShape::default(),
            repeats: 1,
        }
    }

    #[test]
    fn default_threads_are_one_and_all_cores_and_work_adds_up() {
        assert_eq!(KernelGrid::default_threads(4), [1, 4]);
        assert_eq!(KernelGrid::default_threads(1), [1]);
        assert_eq!(KernelGrid::default_threads(0), [1]);
        let g = grid();
        let each: u64 = g.shapes().iter().map(KernelGrid::work).sum();
        assert_eq!(g.total_work(), each);
        assert!(each >= g.shapes().len() as u64);
    }

    #[test]
    fn zero_sizes_and_bad_grouping_name_their_field() {
        let e = KernelGrid {
            seqs: vec![8, 0],
            ..grid()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), Some("seq"));
        let t = TileShape { q: 0, k: 8 };
        let e = KernelGrid { tile: t, ..grid() }.validate().unwrap_err();
        assert_eq!(e.field(), Some("tile.q"));
        let e = KernelGrid {
            heads: 3,
            kv_heads: 2,
            ..grid()
        }
        .validate()
        .unwrap_err();
        assert!(matches!(e, ApiError::HeadsNotMultiple { .. }), "{e}");
    }

    #[test]
    fn the_grid_measures_every_shape_in_order() {
        let g = grid();
        assert_eq!(g.shapes().len(), 4);
        let mut seen = Vec::new();
        g.run(&SchedSpec::default(), &mut |_| {}, &mut |s, r| {
            assert!(r.gflops > 0.0 && r.median_s > 0.0);
            seen.push((s.seq, s.causal));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(32, false), (32, true), (64, false), (64, true)]);
    }
}
