//! sluice-router: everything that moves events, without any wire types.
//!
//! Data flows through the modules in this order:
//!
//! - [`filter`]: Google's Logging query language (and the Pub/Sub subscription filter
//!   dialect), compiled once and evaluated per entry.
//! - [`route`]: log sinks. [`route::LogRouter`] evaluates every sink's filter on each
//!   LogEntry and turns the matches into messages for the sinks' topics.
//! - [`deliver`]: topics and subscriptions. [`deliver::Broker`] publishes those messages and
//!   hands them to consumers with leases, redelivery and dead-lettering.
//! - [`store`]: durable state behind the [`store::Store`] trait, with the embedded
//!   [`store::SledStore`]. No other module opens the database.
//! - [`buckets`]: a local object store with Cloud Storage semantics, whose object changes
//!   become notification messages for the broker. [`storage::Storage`] joins the two, so
//!   that each change publishes its notifications.
//! - [`trace_context`]: the W3C trace context that messages carry in their attributes.
//!
//! The `sluice` binary adapts these types to gRPC and HTTP; the adapters live there, so this
//! crate stays free of tonic and axum.

pub mod buckets;
pub mod deliver;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod kv_key;
pub mod metrics;
pub mod route;
pub mod storage;
pub mod store;
pub mod trace_context;
