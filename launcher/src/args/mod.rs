//! Argument groups shared by several commands: scheduler options (`run`, `decode`, `bench`),
//! micro-kernel choice (`--isa`: `run`, `decode`, `bench kernel`, `info`)
//! and DuoAttention options (`run`, `decode`, `simulate`, `bench scaling`).

pub mod duo;
pub mod isa;
pub mod sched;
