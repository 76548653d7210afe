//! ringattn-benches: criterion micro-benches of the kernel (`benches/kernel.rs`). Run with
//! `cargo bench -p ringattn-benches`. The scaling sweeps are `ringattn bench scaling` (the CLI).
