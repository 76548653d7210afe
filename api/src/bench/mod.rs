//! Benchmarks' measurements (what `ringattn bench` runs; the CLI maps arguments and prints).

pub mod kernel;
