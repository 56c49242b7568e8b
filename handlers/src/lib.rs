//! Background functions for sluice.
//!
//! [`contract`] defines what a background function receives and returns, modelled on Cloud
//! Functions background functions. [`event`] converts a delivered Pub/Sub message into that
//! `(data, context)` pair. A Cloud Storage notification becomes a storage event, and any other
//! message a Pub/Sub event. [`runner`] feeds one subscription of the broker to one handler,
//! with bounded concurrency, lease extension, backoff and dead-lettering.
//!
//! [`thumbnail`] is the thumbnail function. Its pure image core renders a small copy of a
//! photo. [`thumbnail::ThumbnailHandler`] reads each object finalized in a bucket and writes
//! that copy into another bucket, or into the same one under a name prefix.
//!
//! [`annotate`] is a local stand-in for Cloud Vision's image properties: for each image
//! finalized in a bucket, [`annotate::AnnotateHandler`] writes a JSON annotation with the
//! size, format, EXIF summary, dominant colours and perceptual hash into another bucket.
//!
//! [`offers`] validates seller offers published to a topic, keeps the best offer per product
//! in a bucket and publishes accepted offers to another topic.
//!
//! [`push`] is the push client: it POSTs each message of a push subscription to its endpoint,
//! under the same runner, in Pub/Sub's push format or as one of the events of [`events`]: the
//! legacy background event of Cloud Functions, or a CloudEvent in binary mode.
//!
//! A message moves through them in this order: the broker delivers it to the runner,
//! [`event::to_event`] converts it, [`contract::invoke`] runs the handler, and the runner
//! acknowledges, retries or rejects the delivery according to the result.

pub mod annotate;
pub mod contract;
pub mod event;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
mod log_limit;
mod metrics;
pub mod offers;
pub mod push;
pub mod runner;
pub(crate) mod source;
pub mod thumbnail;
