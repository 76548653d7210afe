//! Power-of-two scaling of V rows near `f32::MAX` (issue 13).
//!
//! The online-softmax accumulator `acc = Σ exp(s − m) · v` grows to `l · max|v|` (`l` ≤ the
//! number of keys) before [`AttnState::finalize`] divides by `l`, so V rows near `f32::MAX`
//! overflow it although the true output (a convex combination of V rows) is finite. Whenever a
//! KV block or cache holds some `|v|` above [`V_SCALE_THRESHOLD`] (2⁶²), the kernels are given
//! a copy of V multiplied by `2^−V_SCALE_EXP` (exact: a power of two) and the state records the
//! exponent in [`AttnState::v_exp`]; blocks met later, and states merged with it, are brought to
//! the same exponent, and `finalize` multiplies `out` back by `2^v_exp`. With |v| ≤ 2⁶² (or
//! 2¹²⁸·2⁻⁶⁴ when scaled) the accumulator stays below 2¹²⁶ for up to 2⁶⁴ keys, so it never
//! overflows. Inputs without such values (every ordinary job) pay one integer max pass over V
//! per block, and the kernels are untouched. The only precision cost is on scaled jobs: values
//! below 2⁻⁶² of the largest become denormal, an error far below the largest |v|'s rounding.

use half::bf16;

use crate::kv_cache::KvCache;
use crate::state::AttnState;
use crate::tensor::{KvBlock, KvData};

/// The exponent `e` by which V is scaled down (`v · 2^−e`) when it holds values above
/// [`V_SCALE_THRESHOLD`].
pub const V_SCALE_EXP: i32 = 64;

/// The largest `|v|` that is never scaled: 2⁶² (2⁶⁴ keys of it sum to 2¹²⁶ < `f32::MAX`).
pub const V_SCALE_THRESHOLD: f32 = 4.611_686e18;

/// Whether some element of `data` has `|x|` above [`V_SCALE_THRESHOLD`] (or is NaN/±∞),
/// by an integer max over the bit patterns (vectorises; no float compares).
pub fn exceeds_threshold(data: &KvData) -> bool {
    match data {
        KvData::F32(v) => {
            let limit = V_SCALE_THRESHOLD.to_bits();
            v.iter().fold(0u32, |a, x| a.max(x.to_bits() & 0x7fff_ffff)) > limit
        }
        KvData::Bf16(v) => {
            let limit = bf16::from_f32(V_SCALE_THRESHOLD).to_bits();
            v.iter().fold(0u16, |a, x| a.max(x.to_bits() & 0x7fff)) > limit
        }
    }
}

/// `data` multiplied by `2^−exp` (exact but for results below the normal range).
pub fn scaled(data: &KvData, exp: i32) -> KvData {
    let f = pow2(-exp);
    match data {
        KvData::F32(v) => KvData::F32(v.iter().map(|x| x * f).collect()),
        KvData::Bf16(v) => KvData::Bf16(v.iter().map(|x| bf16::from_f32(x.to_f32() * f)).collect()),
    }
}

/// `2^e` as f32 for `e` in −126..=127.
pub fn pow2(e: i32) -> f32 {
    debug_assert!((-126..=127).contains(&e));
    f32::from_bits(((127 + e) as u32) << 23)
}

/// The block the kernel must see for `state`: `None` when `kv` can be used as it is (no huge
/// value and an unscaled state), else a copy with V scaled by `2^−V_SCALE_EXP`, after bringing
/// `state` to that exponent.
pub fn prepare_block(kv: &KvBlock, state: &mut AttnState) -> Option<KvBlock> {
    if state.v_exp == 0 && !exceeds_threshold(&kv.v) {
        return None;
    }
    state.rescale_to(V_SCALE_EXP);
    let mut copy = kv.clone();
    copy.v = scaled(&kv.v, V_SCALE_EXP);
    Some(copy)
}

/// [`prepare_block`] for the decode cache: `None`, or a copy of `cache` whose V rows are scaled.
pub fn prepare_cache(cache: &KvCache, state: &mut AttnState) -> Option<KvCache> {
    if state.v_exp == 0 && !cache.heads().iter().any(|h| h.v_huge()) {
        return None;
    }
    state.rescale_to(V_SCALE_EXP);
    Some(cache.with_scaled_v(V_SCALE_EXP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_scaling_are_exact() {
        assert_eq!(V_SCALE_THRESHOLD, pow2(62));
        assert_eq!(pow2(-64), 2f32.powi(-64));
        let v = KvData::F32(vec![1.0, -V_SCALE_THRESHOLD]);
        assert!(!exceeds_threshold(&v));
        let big = KvData::F32(vec![1.0, -3e38]);
        assert!(exceeds_threshold(&big));
        assert!(exceeds_threshold(&KvData::from_f32(
            vec![3e38],
            crate::tensor::Dtype::Bf16
        )));
        let s = scaled(&big, V_SCALE_EXP);
        assert_eq!(s.as_f32().unwrap()[1] * pow2(64), -3e38);
    }
}
