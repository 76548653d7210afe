//! ringattn-striped: causal-balanced layouts (Striped, Zigzag) and the Partitioner that picks
//! a layout explicitly or with a cost model.

#![warn(missing_docs)]

pub mod layouts;
pub mod partitioner;

pub use layouts::{Striped, Zigzag};
pub use partitioner::{
    estimate, plan, Estimate, LayoutChoice, LayoutKind, Plan, PARTIAL_TILE_COST,
};
