//! ringattn-benches: criterion micro-benches (`benches/kernel.rs`) and, later, the scaling
//! harness. Run with `cargo bench -p ringattn-benches`.
