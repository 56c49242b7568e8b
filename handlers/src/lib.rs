//! Background functions for sluice.
//!
//! [`contract`] defines what a background function receives and returns, modelled on Cloud
//! Functions background functions. [`event`] converts a delivered Pub/Sub message into that
//! `(data, context)` pair: a Cloud Storage notification becomes a storage event, any other
//! message a Pub/Sub event. [`runner`] feeds one subscription of the broker to one handler,
//! with bounded concurrency, lease extension, backoff and dead-lettering.
//!
//! [`thumbnail`] is the pure image core of the thumbnail function, which writes a small copy
//! of each photo uploaded to a bucket into another bucket.
//!
//! A message moves through them in this order: the broker delivers it to the runner,
//! [`event::to_event`] converts it, [`contract::invoke`] runs the handler, and the runner
//! acknowledges, retries or rejects the delivery according to the result.

pub mod contract;
pub mod event;
pub mod runner;
pub mod thumbnail;
