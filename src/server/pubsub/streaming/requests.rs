//! Validation of StreamingPull requests, and the acks and deadline changes they carry.

use std::collections::BTreeMap;

use sluice_proto::google::pubsub::v1::StreamingPullRequest;
use tonic::Status;

use crate::server::pubsub::{ack_deadline_seconds, PubsubService};

/// Stream ack deadlines the service accepts, in seconds.
const STREAM_ACK_DEADLINE_SECS: std::ops::RangeInclusive<i32> = 10..=600;

/// Rejects the fields that only the first request of a stream may set.
pub(super) fn reject_first_request_fields(request: &StreamingPullRequest) -> Result<(), Status> {
    if !request.subscription.is_empty() {
        return Err(Status::invalid_argument(format!(
            "subscription is set to {:?} in a later request; set it only in the first request \
             of a stream",
            request.subscription
        )));
    }
    let first_only = [
        ("max_outstanding_messages", request.max_outstanding_messages),
        ("max_outstanding_bytes", request.max_outstanding_bytes),
        ("protocol_version", request.protocol_version),
    ];
    for (field, value) in first_only {
        if value != 0 {
            return Err(Status::invalid_argument(format!(
                "{field} is {value} in a later request; set it only in the first request of a \
                 stream"
            )));
        }
    }
    Ok(())
}

/// Returns a stream ack deadline in seconds when it is within 10..600.
pub(super) fn stream_ack_deadline(seconds: i32) -> Option<u32> {
    STREAM_ACK_DEADLINE_SECS
        .contains(&seconds)
        .then(|| u32::try_from(seconds).ok())
        .flatten()
}

/// Returns a flow-control limit, or `None` for a value <= 0, which means no limit.
pub(super) fn limit(value: i64) -> Option<usize> {
    (value > 0).then(|| usize::try_from(value).unwrap_or(usize::MAX))
}

impl PubsubService {
    /// Applies the acks and deadline changes of a StreamingPull request, after checking all
    /// of them.
    pub(super) async fn apply_stream_acks(
        &self,
        subscription: &str,
        request: &StreamingPullRequest,
    ) -> Result<(), Status> {
        if request.modify_deadline_ack_ids.len() != request.modify_deadline_seconds.len() {
            return Err(Status::invalid_argument(format!(
                "ack IDs and deadlines must have the same size; the request has {} \
                 modify_deadline_ack_ids and {} modify_deadline_seconds",
                request.modify_deadline_ack_ids.len(),
                request.modify_deadline_seconds.len()
            )));
        }
        let mut by_deadline: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (ack_id, seconds) in request
            .modify_deadline_ack_ids
            .iter()
            .zip(&request.modify_deadline_seconds)
        {
            let seconds = ack_deadline_seconds(*seconds, "modify_deadline_seconds")?;
            by_deadline.entry(seconds).or_default().push(ack_id.clone());
        }
        if !request.ack_ids.is_empty() {
            self.acknowledge_ids(subscription, &request.ack_ids).await?;
        }
        for (seconds, ack_ids) in by_deadline {
            self.modify_deadlines(subscription, &ack_ids, seconds)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ack_deadline_range() {
        assert_eq!(stream_ack_deadline(9), None);
        assert_eq!(stream_ack_deadline(10), Some(10));
        assert_eq!(stream_ack_deadline(600), Some(600));
        assert_eq!(stream_ack_deadline(601), None);
        assert_eq!(stream_ack_deadline(-10), None);
    }

    #[test]
    fn non_positive_limits_mean_none() {
        assert_eq!(limit(0), None);
        assert_eq!(limit(-1), None);
        assert_eq!(limit(2), Some(2));
    }
}
