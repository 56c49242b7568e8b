//! Bookkeeping of `sluice ingest`: the batches awaiting their ack, the counts that the acks
//! add up to, and the summary printed at the end.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use sluice_proto::sluice::v1::{IngestAck, IngestBatch};

use super::reader::Batch;
use crate::cli::input::Location;

/// A sent batch that waits for its ack.
#[derive(Debug)]
struct PendingBatch {
    locations: Vec<Location>,
    bytes_read: u64,
}

/// An entry that the server rejected, located in the input.
#[derive(Debug)]
pub(crate) struct Rejection {
    /// `None` when the server named an index outside the batch.
    pub(crate) location: Option<Location>,
    /// Batch sequence and index that the server named.
    pub(crate) sequence: u64,
    pub(crate) index: u32,
    pub(crate) message: String,
}

/// Result of applying one ack.
#[derive(Debug)]
pub(crate) struct AckReport {
    pub(crate) rejections: Vec<Rejection>,
    /// Input bytes read up to the end of the acknowledged batch.
    pub(crate) bytes_read: u64,
}

/// Counts of one `sluice ingest` run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pending: BTreeMap<u64, PendingBatch>,
    last_sequence: u64,
    sent_entries: u64,
    sent_batches: u64,
    /// Entries in acknowledged batches.
    pub(crate) acknowledged: u64,
    accepted: u64,
    unmatched: u64,
    rejected: u64,
    /// Input lines that were not LogEntries and were not sent.
    pub(crate) invalid: u64,
    sink_matches: BTreeMap<String, u64>,
}

impl Tally {
    /// Records `batch` as sent and returns the request that carries it, with the next
    /// sequence number.
    pub(crate) fn send(&mut self, batch: Batch) -> IngestBatch {
        self.last_sequence += 1;
        let sequence = self.last_sequence;
        self.sent_batches += 1;
        self.sent_entries += batch.entries.len() as u64;
        self.pending.insert(
            sequence,
            PendingBatch {
                locations: batch.locations,
                bytes_read: batch.bytes_read,
            },
        );
        IngestBatch {
            sequence,
            entries: batch.entries,
        }
    }

    /// Number of sent batches without an ack.
    pub(crate) fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    /// Adds an ack's counts and locates its rejected entries in the input.
    ///
    /// # Errors
    ///
    /// Fails when the ack is for a batch that is not waiting for one.
    pub(crate) fn apply(&mut self, ack: IngestAck) -> Result<AckReport, String> {
        let Some(batch) = self.pending.remove(&ack.sequence) else {
            return Err(format!(
                "the server sent an ack for batch {}, which is not waiting for one",
                ack.sequence
            ));
        };
        self.acknowledged += batch.locations.len() as u64;
        self.accepted += u64::from(ack.accepted);
        self.unmatched += u64::from(ack.unmatched);
        self.rejected += ack.errors.len() as u64;
        for (sink, count) in ack.sink_matches {
            *self.sink_matches.entry(sink).or_default() += u64::from(count);
        }
        let rejections = ack
            .errors
            .into_iter()
            .map(|error| Rejection {
                location: usize::try_from(error.index)
                    .ok()
                    .and_then(|index| batch.locations.get(index))
                    .copied(),
                sequence: ack.sequence,
                index: error.index,
                message: error.message,
            })
            .collect();
        Ok(AckReport {
            rejections,
            bytes_read: batch.bytes_read,
        })
    }

    /// Returns whether every line was read, sent, acknowledged and accepted.
    pub(crate) fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.invalid == 0 && self.rejected == 0
    }

    /// Writes the summary: counts, matches per sink, elapsed time and rate.
    pub(crate) fn write_summary(&self, out: &mut impl Write, elapsed: Duration) -> io::Result<()> {
        let batches = plural(self.sent_batches, "batch", "batches");
        writeln!(out, "entries sent:      {} in {batches}", self.sent_entries)?;
        if !self.pending.is_empty() {
            let unacknowledged = self.sent_entries - self.acknowledged;
            let batches = plural(self.pending.len() as u64, "batch", "batches");
            writeln!(
                out,
                "not acknowledged:  {unacknowledged} in {batches}; the server may or may not have stored them"
            )?;
        }
        writeln!(out, "accepted:          {}", self.accepted)?;
        writeln!(out, "unmatched:         {}", self.unmatched)?;
        writeln!(out, "rejected:          {}", self.rejected)?;
        writeln!(out, "invalid lines:     {} (not sent)", self.invalid)?;
        if self.sink_matches.is_empty() {
            writeln!(out, "matches per sink:  none")?;
        } else {
            writeln!(out, "matches per sink:")?;
            let width = self.sink_matches.keys().map(String::len).max().unwrap_or(0);
            for (sink, count) in &self.sink_matches {
                writeln!(out, "  {sink:<width$}  {count}")?;
            }
        }
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.sent_entries as f64 / seconds
        } else {
            0.0
        };
        writeln!(
            out,
            "elapsed:           {seconds:.2} s ({rate:.0} entries/s)"
        )
    }
}

fn plural(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::sluice::v1::EntryError;

    use super::*;

    fn location(number: u64, line: u64) -> Location {
        Location {
            number,
            line: Some(line),
        }
    }

    fn batch(lines: &[u64]) -> Batch {
        Batch {
            entries: lines.iter().map(|_| "{}".to_owned()).collect(),
            locations: lines
                .iter()
                .enumerate()
                .map(|(i, &line)| location(i as u64 + 1, line))
                .collect(),
            bytes_read: 100,
            ..Default::default()
        }
    }

    #[test]
    fn rejections_map_to_lines() {
        let mut tally = Tally::default();
        let first = tally.send(batch(&[1, 2]));
        let second = tally.send(batch(&[4, 7, 9]));
        assert_eq!(first.sequence, 1);
        assert_eq!(second.sequence, 2);
        assert_eq!(tally.pending_batches(), 2);

        let ack = IngestAck {
            sequence: 2,
            accepted: 2,
            unmatched: 1,
            errors: vec![EntryError {
                index: 1,
                message: "bad entry".to_owned(),
            }],
            sink_matches: [("errors".to_owned(), 1)].into_iter().collect(),
        };
        let report = tally.apply(ack).expect("batch 2 is pending");
        assert_eq!(report.rejections.len(), 1);
        assert_eq!(report.rejections[0].location.and_then(|l| l.line), Some(7));
        assert_eq!(report.rejections[0].message, "bad entry");
        assert_eq!(tally.pending_batches(), 1);
        assert_eq!(tally.acknowledged, 3);
        assert!(!tally.is_clean(), "a rejection and a pending batch remain");
    }

    #[test]
    fn out_of_range_index_has_no_location() {
        let mut tally = Tally::default();
        tally.send(batch(&[1]));
        let ack = IngestAck {
            sequence: 1,
            errors: vec![EntryError {
                index: 5,
                message: "bad".to_owned(),
            }],
            ..Default::default()
        };
        let report = tally.apply(ack).expect("batch 1 is pending");
        assert_eq!(report.rejections[0].location.map(|l| l.number), None);
        assert_eq!(report.rejections[0].index, 5);
    }

    #[test]
    fn unknown_ack_rejected() {
        let mut tally = Tally::default();
        tally.send(batch(&[1]));
        let ack = IngestAck {
            sequence: 9,
            ..Default::default()
        };
        assert!(tally.apply(ack).is_err());
        assert_eq!(tally.pending_batches(), 1);
    }

    #[test]
    fn summary_lists_sinks() {
        let mut tally = Tally::default();
        tally.send(batch(&[1, 2, 3]));
        let ack = IngestAck {
            sequence: 1,
            accepted: 3,
            unmatched: 1,
            errors: Vec::new(),
            sink_matches: [("storage-audit".to_owned(), 1), ("errors".to_owned(), 2)]
                .into_iter()
                .collect(),
        };
        tally.apply(ack).expect("batch 1 is pending");
        assert!(tally.is_clean());
        let mut out = Vec::new();
        tally
            .write_summary(&mut out, Duration::from_millis(500))
            .expect("writing to a Vec succeeds");
        let text = String::from_utf8(out).expect("the summary is UTF-8");
        assert_eq!(
            text,
            "entries sent:      3 in 1 batch\n\
             accepted:          3\n\
             unmatched:         1\n\
             rejected:          0\n\
             invalid lines:     0 (not sent)\n\
             matches per sink:\n\
             \x20 errors         2\n\
             \x20 storage-audit  1\n\
             elapsed:           0.50 s (6 entries/s)\n"
        );
    }
}
