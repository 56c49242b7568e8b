//! A bucket's state in memory and the Cloud Storage semantics of each object change.
//!
//! Nothing here touches the disk: [`BucketState`] applies a change, returns the events it
//! causes and the generations whose bytes are no longer needed, and can undo the change if
//! writing the index fails.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::notify::{check_config, EventType, NotificationConfig, ObjectEvent};
use super::object::{truncate_to_millis, ObjectResource};

/// A bucket's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: String,
    /// Whether replaced and deleted generations are kept as noncurrent versions.
    pub versioning: bool,
    /// When the bucket was created, to the millisecond.
    #[serde(with = "super::object::rfc3339_millis")]
    pub time_created: SystemTime,
}

/// The result of a list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Matching objects by name, and for one name by ascending generation.
    pub objects: Vec<ObjectResource>,
    /// The distinct prefixes, each ending with the delimiter, that stand for the objects the
    /// delimiter grouped, in ascending order.
    pub prefixes: Vec<String>,
}

/// The result of an object change: the object it wrote, patched, archived or deleted, and the
/// events to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// The object as it is after the change. After a delete it is the removed generation.
    pub object: ObjectResource,
    /// The events the change caused, in the order they happened.
    pub events: Vec<ObjectEvent>,
}

/// The versions of one object name.
#[derive(Debug, Clone, Default)]
struct Versions {
    live: Option<ObjectResource>,
    noncurrent: BTreeMap<i64, ObjectResource>,
}

impl Versions {
    fn is_empty(&self) -> bool {
        self.live.is_none() && self.noncurrent.is_empty()
    }

    /// Returns every version by ascending generation, so the live one comes last.
    fn all(&self) -> impl Iterator<Item = &ObjectResource> {
        self.noncurrent.values().chain(self.live.as_ref())
    }
}

/// Restores one object name to its state before a change.
#[derive(Debug)]
pub(crate) struct Undo {
    name: String,
    previous: Option<Versions>,
}

/// A change applied in memory, waiting for the index to be written.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) change: ObjectChange,
    /// Generations whose bytes are no longer referenced once the index is written.
    pub(crate) discarded: Vec<i64>,
    pub(crate) undo: Undo,
}

/// A bucket's settings, notification configs and object versions.
#[derive(Debug)]
pub(crate) struct BucketState {
    pub(crate) info: BucketInfo,
    pub(crate) notification_configs: Vec<NotificationConfig>,
    /// The id the next config without an id gets.
    pub(crate) next_notification_id: u64,
    /// Set when the bucket is deleted, so that operations that were waiting for this state's
    /// lock report the bucket as not found instead of writing to a removed folder.
    pub(crate) deleted: bool,
    objects: BTreeMap<String, Versions>,
}

impl BucketState {
    pub(crate) fn new(info: BucketInfo) -> Self {
        Self {
            info,
            notification_configs: Vec::new(),
            next_notification_id: 1,
            deleted: false,
            objects: BTreeMap::new(),
        }
    }

    /// Adds a notification config, or replaces the one with the same id, and returns it as
    /// stored. A config with an empty id gets the next free integer id. Returns why the
    /// config cannot be added, and then changes nothing.
    pub(crate) fn insert_config(
        &mut self,
        mut config: NotificationConfig,
    ) -> Result<NotificationConfig, String> {
        if config.id.is_empty() {
            config.id = self.next_notification_id.to_string();
        }
        let others: Vec<NotificationConfig> = self
            .notification_configs
            .iter()
            .filter(|c| c.id != config.id)
            .cloned()
            .collect();
        check_config(&config, &others)?;
        if let Ok(id) = config.id.parse::<u64>() {
            self.next_notification_id = self.next_notification_id.max(id.saturating_add(1));
        }
        match self
            .notification_configs
            .iter_mut()
            .find(|c| c.id == config.id)
        {
            Some(existing) => *existing = config.clone(),
            None => self.notification_configs.push(config.clone()),
        }
        Ok(config)
    }

    /// Adds a version read from the index.
    ///
    /// # Errors
    ///
    /// Returns what is inconsistent: a second live version of a name, or a generation that
    /// appears twice for one name.
    pub(crate) fn insert_loaded(&mut self, object: ObjectResource) -> Result<(), String> {
        let versions = self.objects.entry(object.name.clone()).or_default();
        if object.is_live() {
            if let Some(live) = &versions.live {
                return Err(format!(
                    "object {:?} has two live generations, {} and {}",
                    object.name, live.generation, object.generation
                ));
            }
            versions.live = Some(object);
        } else if let Some(previous) = versions.noncurrent.insert(object.generation, object) {
            return Err(format!(
                "generation {} of object {:?} appears twice",
                previous.generation, previous.name
            ));
        }
        Ok(())
    }

    /// Every version of every object, by name and then by ascending generation.
    pub(crate) fn versions(&self) -> impl Iterator<Item = &ObjectResource> {
        self.objects.values().flat_map(Versions::all)
    }

    /// Returns the live version, or the version of `generation` whether live or not.
    pub(crate) fn get(&self, name: &str, generation: Option<i64>) -> Option<&ObjectResource> {
        let versions = self.objects.get(name)?;
        match generation {
            None => versions.live.as_ref(),
            Some(generation) => versions.all().find(|o| o.generation == generation),
        }
    }

    /// Makes `object` the live version of its name.
    ///
    /// A live version it replaces becomes noncurrent in a versioned bucket (OBJECT_ARCHIVE)
    /// and is deleted otherwise (OBJECT_DELETE). That event comes first and carries
    /// `overwrittenByGeneration`. The OBJECT_FINALIZE carries `overwroteGeneration`. The order
    /// means that the last event of a name always reports its final state.
    pub(crate) fn finalize(&mut self, object: ObjectResource, now: SystemTime) -> Applied {
        let name = object.name.clone();
        let previous = self.objects.get(&name).cloned();
        let versioning = self.info.versioning;
        let versions = self.objects.entry(name.clone()).or_default();
        let mut events = Vec::new();
        let mut discarded = Vec::new();
        let mut overwrote_generation = None;
        if let Some(mut old) = versions.live.take() {
            overwrote_generation = Some(old.generation);
            let event_type = if versioning {
                old.time_deleted = Some(truncate_to_millis(now));
                versions.noncurrent.insert(old.generation, old.clone());
                EventType::ObjectArchive
            } else {
                discarded.push(old.generation);
                EventType::ObjectDelete
            };
            events.push(ObjectEvent {
                event_type,
                event_time: now,
                object: old,
                overwrote_generation: None,
                overwritten_by_generation: Some(object.generation),
            });
        }
        events.push(ObjectEvent {
            event_type: EventType::ObjectFinalize,
            event_time: now,
            object: object.clone(),
            overwrote_generation,
            overwritten_by_generation: None,
        });
        versions.live = Some(object.clone());
        Applied {
            change: ObjectChange { object, events },
            discarded,
            undo: Undo { name, previous },
        }
    }

    /// Deletes the live version (`generation` `None`) or one generation.
    ///
    /// Deleting the live version of a versioned bucket makes it noncurrent (OBJECT_ARCHIVE).
    /// Every other delete removes the generation for good (OBJECT_DELETE), a live generation
    /// named by number included, as in Cloud Storage. Returns `None` when there is no such
    /// version.
    pub(crate) fn delete(
        &mut self,
        name: &str,
        generation: Option<i64>,
        now: SystemTime,
    ) -> Option<Applied> {
        let previous = self.objects.get(name)?.clone();
        let versioning = self.info.versioning;
        let versions = self.objects.get_mut(name)?;
        let live_matches = versions
            .live
            .as_ref()
            .is_some_and(|live| generation.is_none_or(|g| g == live.generation));
        let (event_type, object) = if live_matches {
            let mut live = versions.live.take()?;
            if versioning && generation.is_none() {
                live.time_deleted = Some(truncate_to_millis(now));
                versions.noncurrent.insert(live.generation, live.clone());
                (EventType::ObjectArchive, live)
            } else {
                (EventType::ObjectDelete, live)
            }
        } else {
            let removed = versions.noncurrent.remove(&generation?)?;
            (EventType::ObjectDelete, removed)
        };
        if versions.is_empty() {
            self.objects.remove(name);
        }
        let discarded = match event_type {
            EventType::ObjectDelete => vec![object.generation],
            _ => Vec::new(),
        };
        let event = ObjectEvent {
            event_type,
            event_time: now,
            object: object.clone(),
            overwrote_generation: None,
            overwritten_by_generation: None,
        };
        Some(Applied {
            change: ObjectChange {
                object,
                events: vec![event],
            },
            discarded,
            undo: Undo {
                name: name.to_owned(),
                previous: Some(previous),
            },
        })
    }

    /// Changes the metadata of the live version and raises its metageneration
    /// (OBJECT_METADATA_UPDATE). A `None` value in `changes` removes that key. Returns `None`
    /// when the object has no live version.
    pub(crate) fn patch(
        &mut self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
        content_type: Option<&str>,
        now: SystemTime,
    ) -> Option<Applied> {
        let previous = self.objects.get(name)?.clone();
        let live = self.objects.get_mut(name)?.live.as_mut()?;
        for (key, value) in changes {
            match value {
                Some(value) => live.metadata.insert(key.clone(), value.clone()),
                None => live.metadata.remove(key),
            };
        }
        if let Some(content_type) = content_type {
            live.content_type = content_type.to_owned();
        }
        live.metageneration += 1;
        live.updated = truncate_to_millis(now);
        let object = live.clone();
        let event = ObjectEvent {
            event_type: EventType::ObjectMetadataUpdate,
            event_time: now,
            object: object.clone(),
            overwrote_generation: None,
            overwritten_by_generation: None,
        };
        Some(Applied {
            change: ObjectChange {
                object,
                events: vec![event],
            },
            discarded: Vec::new(),
            undo: Undo {
                name: name.to_owned(),
                previous: Some(previous),
            },
        })
    }

    /// Reverts the change that returned `undo`.
    pub(crate) fn undo(&mut self, undo: Undo) {
        match undo.previous {
            Some(versions) => self.objects.insert(undo.name, versions),
            None => self.objects.remove(&undo.name),
        };
    }

    /// Lists objects as Cloud Storage's `objects.list` does, without pagination.
    ///
    /// Only names starting with `prefix` match. With a non-empty `delimiter`, a name whose
    /// rest after the prefix contains the delimiter is not listed. Instead, the name up to and
    /// including the delimiter's first occurrence in that rest goes to the prefixes.
    /// With `versions`, noncurrent versions are listed too, and names that only have
    /// noncurrent versions count.
    pub(crate) fn list(&self, prefix: &str, delimiter: Option<&str>, versions: bool) -> Listing {
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut listing = Listing::default();
        let range = (Bound::Included(prefix), Bound::Unbounded);
        for (name, entry) in self.objects.range::<str, _>(range) {
            if !name.starts_with(prefix) {
                break;
            }
            let listed: Vec<&ObjectResource> = if versions {
                entry.all().collect()
            } else {
                entry.live.iter().collect()
            };
            if listed.is_empty() {
                continue;
            }
            let rest = &name[prefix.len()..];
            if let Some(end) = delimiter.and_then(|d| rest.find(d).map(|at| at + d.len())) {
                let grouped = &name[..prefix.len() + end];
                if listing.prefixes.last().map(String::as_str) != Some(grouped) {
                    listing.prefixes.push(grouped.to_owned());
                }
                continue;
            }
            listing.objects.extend(listed.into_iter().cloned());
        }
        listing
    }
}
