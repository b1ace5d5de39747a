#![warn(missing_docs)]
//! Placement of the routing-requests seed as pure functions: hosting venues and their sensors,
//! the ledger of what is held on every day, the assessment of each venue for a workload
//! (fit-for-purpose, capacity, cost, score) and the routing of a whole request, placed or
//! rejected as one unit.
//!
//! No I/O: callers bring the venues (configured and measured), the holds already made and the
//! day, so every decision can be replayed.

pub mod assess;
pub mod day;
pub mod ledger;
pub mod route;
pub mod venue;
pub mod workload;

pub use assess::{Assessment, Check, Criteria, Mode, Prices, SensorFigure, assess};
pub use day::Day;
pub use ledger::{Hold, Ledger};
pub use route::{Placement, RouteInput, RouteOutcome, WorkloadRefusal, available, available_in, route};
pub use venue::{Control, Datastore, Scope, SensorType, Strategies, Strategy, Subnet, Venue};
pub use workload::{Demand, DiskNeed, Workload};
