//! Argument groups shared by several commands: scheduler options (`run`, `decode`, `bench`)
//! and DuoAttention options (`run`, `decode`, `simulate`, `bench scaling`).

pub mod duo;
pub mod sched;
