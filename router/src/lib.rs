//! sluice-router: everything that moves events.

pub mod deliver;
pub mod filter;
pub mod store;
