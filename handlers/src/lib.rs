//! Background functions for sluice.
//!
//! [`contract`] defines what a background function receives and returns, modelled on Cloud
//! Functions background functions. [`thumbnail`] is the pure image core of the thumbnail
//! function, which writes a small copy of each photo uploaded to a bucket into another
//! bucket. Bucket access and server wiring live elsewhere.

pub mod contract;
pub mod thumbnail;
