//! The snapshot calls of the Subscriber service: CreateSnapshot, GetSnapshot,
//! UpdateSnapshot, DeleteSnapshot, ListSnapshots and Seek.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::google::protobuf::Timestamp;
use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_proto::google::pubsub::v1::seek_request::Target;
use sluice_router::store::{SeekTarget, SnapshotRecord, DELETED_TOPIC};
use tonic::Status;

use super::names::{self, Collection};
use super::pages::page;
use super::resources::snapshot_of;
use super::{status, update_paths, PubsubService};

/// Takes a snapshot of a subscription's acknowledgement state.
pub(super) async fn create(
    service: &PubsubService,
    request: &pubsub::CreateSnapshotRequest,
) -> Result<pubsub::Snapshot, Status> {
    let name = names::new_resource(&request.name, Collection::Snapshots)?;
    let subscription = names::subscription(&request.subscription)?;
    if !request.labels.is_empty() {
        return Err(Status::invalid_argument(
            "the labels field of a Snapshot is not supported by sluice; leave it unset",
        ));
    }
    let _catalog = service.catalog.lock().await;
    let spec = service.live_spec(&subscription)?;
    if spec.topic == DELETED_TOPIC {
        return Err(Status::failed_precondition(format!(
            "the topic of {} was deleted, so it has no messages to take a snapshot of",
            request.subscription
        )));
    }
    let record = service
        .broker
        .create_snapshot(&name, &subscription)
        .await
        .map_err(|err| status::from_store(&err))?;
    Ok(snapshot_of(&record))
}

/// Returns a snapshot.
pub(super) fn get(
    service: &PubsubService,
    request: &pubsub::GetSnapshotRequest,
) -> Result<pubsub::Snapshot, Status> {
    let name = names::snapshot(&request.snapshot)?;
    Ok(snapshot_of(&find(service, &name)?))
}

fn find(service: &PubsubService, name: &str) -> Result<SnapshotRecord, Status> {
    service
        .broker
        .snapshots()
        .into_iter()
        .find(|snapshot| snapshot.name == name)
        .ok_or_else(|| status::snapshot_not_found(name))
}

/// Rejects UpdateSnapshot after checking the request: sluice cannot change a snapshot's
/// expiry or labels.
pub(super) fn update(
    service: &PubsubService,
    request: &pubsub::UpdateSnapshotRequest,
) -> Result<pubsub::Snapshot, Status> {
    let snapshot = request.snapshot.as_ref().ok_or_else(|| {
        Status::invalid_argument("snapshot is required: set the snapshot to update")
    })?;
    let name = names::snapshot(&snapshot.name)?;
    for path in update_paths(request.update_mask.as_ref(), "UpdateSnapshotRequest")? {
        if !matches!(path.as_str(), "expire_time" | "labels") {
            return Err(Status::invalid_argument(format!(
                "Invalid update_mask provided in the UpdateSnapshotRequest: {path} is not a \
                 known Snapshot field that can change; use expire_time or labels"
            )));
        }
    }
    find(service, &name)?;
    Err(Status::unimplemented(
        "UpdateSnapshot is not supported: sluice cannot change the expire_time or labels of \
         a snapshot. Delete the snapshot and create a new one instead",
    ))
}

/// Deletes a snapshot.
pub(super) async fn delete(
    service: &PubsubService,
    request: &pubsub::DeleteSnapshotRequest,
) -> Result<(), Status> {
    let name = names::snapshot(&request.snapshot)?;
    let _catalog = service.catalog.lock().await;
    service
        .broker
        .delete_snapshot(&name)
        .await
        .map_err(|err| status::from_store(&err))
}

/// Lists the snapshots of a project.
pub(super) fn list(
    service: &PubsubService,
    request: &pubsub::ListSnapshotsRequest,
) -> Result<pubsub::ListSnapshotsResponse, Status> {
    let project = names::project(&request.project)?;
    let snapshots = service
        .broker
        .snapshots()
        .into_iter()
        .filter(|snapshot| names::in_project(&snapshot.name, project))
        .map(|snapshot| (snapshot.name.clone(), snapshot_of(&snapshot)))
        .collect();
    let page = page(snapshots, request.page_size, &request.page_token)?;
    Ok(pubsub::ListSnapshotsResponse {
        snapshots: page.items,
        next_page_token: page.next_page_token,
    })
}

/// Moves a subscription to a time or a snapshot.
pub(super) async fn seek(
    service: &PubsubService,
    request: &pubsub::SeekRequest,
) -> Result<pubsub::SeekResponse, Status> {
    let subscription = names::subscription(&request.subscription)?;
    let target = match &request.target {
        Some(Target::Time(time)) => SeekTarget::Time(system_time(time)?),
        Some(Target::Snapshot(snapshot)) => SeekTarget::Snapshot(names::snapshot(snapshot)?),
        None => {
            return Err(Status::invalid_argument(
                "No target was specified in the SeekRequest. Must specify either a time or a \
                 snapshot",
            ))
        }
    };
    let _catalog = service.catalog.lock().await;
    service.live_spec(&subscription)?;
    service
        .broker
        .seek(&subscription, target)
        .await
        .map_err(|err| status::from_broker(&err))?;
    Ok(pubsub::SeekResponse {})
}

/// The latest time a `google.protobuf.Timestamp` may hold: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECS: i64 = 253_402_300_799;

/// Converts a seek time. Times before 1970 select every retained message, as 1970 does.
fn system_time(time: &Timestamp) -> Result<SystemTime, Status> {
    let nanos = u32::try_from(time.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "time.nanos is {}; use 0 to 999,999,999",
                time.nanos
            ))
        })?;
    if time.seconds > MAX_TIMESTAMP_SECS {
        return Err(Status::invalid_argument(format!(
            "time.seconds is {}, after 9999-12-31T23:59:59Z, the latest valid timestamp",
            time.seconds
        )));
    }
    let seconds = u64::try_from(time.seconds).unwrap_or(0);
    Ok(UNIX_EPOCH + Duration::new(seconds, nanos))
}
