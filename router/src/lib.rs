//! sluice-router: everything that moves events.

pub mod filter;
