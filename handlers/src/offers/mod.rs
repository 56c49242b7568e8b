//! The offers function: seller offers published as JSON to a topic are validated, the best
//! offer per product and currency is kept durably, and accepted offers are published to
//! another topic.
//!
//! [`Offer::parse`] validates one offer: required fields, ids kept as the JSON text they were
//! sent as, an exact decimal price and an ISO 4217 currency. [`ProductState`] contains a
//! product's best offers and the ids of the offers it accepted, and decides what a new offer
//! changes. [`OffersHandler`] runs both under the runner: it reads and writes one state object
//! per product in a bucket, so the state survives restarts and can be read with
//! `sluice objects get`, and publishes each accepted offer.

pub mod handler;
mod offer;
mod state;

pub use self::handler::{attributes, state_object_name, OffersConfig, OffersHandler};
pub use self::offer::{InvalidOffer, Offer, OfferId, MAX_ID_BYTES};
pub use self::state::{AcceptedOffer, BestOffer, Decision, ProductState};
