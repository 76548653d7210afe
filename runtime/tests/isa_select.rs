//! The process-wide micro-kernel choice: `attend` runs exactly the forced path (bitwise equal to
//! `attend_with` of it), every forced path agrees with the portable one, and a path this CPU
//! lacks is refused without changing the choice. One test: the choice is process-wide.

use ringattn_runtime::{
    attend, attend_with, set_active_isa, AttnState, Error, Isa, KvBlock, Mask, Positions, QShard,
    Synthetic, TileShape,
};

#[test]
fn forced_paths_match_portable_and_missing_ones_are_refused() {
    let src = Synthetic { seed: 3 };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (heads, dim) = (4, 64);
    let q = QShard::from_source(&src, heads, dim, Positions::contiguous(0, 333)).unwrap();
    let kv = KvBlock::from_source(&src, 0, 2, dim, Positions::contiguous(0, 333)).unwrap();
    let tile = TileShape { q: 64, k: 64 };
    let run = |isa: Option<Isa>| {
        let mut state = AttnState::new(heads, q.rows(), dim);
        match isa {
            Some(isa) => attend_with(isa, &q, &kv, Mask::Causal, tile, &mut state, &pool),
            None => attend(&q, &kv, Mask::Causal, tile, &mut state, &pool),
        };
        state
    };
    let portable = run(Some(Isa::Portable)).finalize();
    for isa in [Isa::Amx, Isa::Avx512, Isa::Avx2, Isa::Portable] {
        let before = Isa::active();
        match set_active_isa(isa) {
            Ok(()) => {
                assert!(isa.is_available());
                assert_eq!(Isa::active(), isa);
                let forced = run(None);
                assert_eq!(forced, run(Some(isa)), "{isa:?}: attend ran another path");
                let fin = forced.finalize();
                for (a, b) in fin.out.iter().zip(&portable.out) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{isa:?}: {a} vs {b}"
                    );
                }
                for (a, b) in fin.lse.iter().zip(&portable.lse) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{isa:?}: {a} vs {b}"
                    );
                }
            }
            Err(e) => {
                assert!(!isa.is_available(), "{isa:?}: {e}");
                assert!(matches!(e, Error::IsaUnavailable { .. }) && e.is_user_error());
                assert_eq!(Isa::active(), before, "a refused choice changes nothing");
            }
        }
    }
}
