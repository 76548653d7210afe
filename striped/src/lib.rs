//! ringattn-striped: causal-balanced layouts (Striped, Zigzag) and the Partitioner that picks
//! a layout explicitly or with a cost model, and the ring simulator built on the same model.

#![warn(missing_docs)]

pub mod calibrate;
pub mod doc_balance;
pub mod doc_layout;
pub mod doc_pick;
pub mod layouts;
pub mod partitioner;
pub mod simulate;
pub mod simulate_duo;
mod simulate_limits;
mod simulate_shared;
mod simulate_trace;
pub mod tilework;

pub use calibrate::{calibrate, Calibration};
pub use doc_balance::DocBalance;
pub use doc_layout::DocZigzag;
pub use layouts::{Striped, Zigzag};
pub use partitioner::{
    earliest_within_tie, estimate, estimate_mixed, plan, plan_mixed, Estimate, HeadMix,
    LayoutChoice, LayoutKind, Plan, PARTIAL_TILE_COST,
};
pub use simulate::{simulate, RankSim, SimConfig, Simulation, StepSim};
pub use simulate_duo::simulate_duo;
pub use tilework::TileWork;
