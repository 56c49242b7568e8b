//! The input side of `sluice ingest`: a thread that reads entries and groups them into
//! batches, so that parsing runs outside the runtime that sends them.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;
use std::thread;

use tokio::sync::mpsc;

use crate::cli::input::{read_entries, Item, Location, ReadError};

/// Buffer size for reading the input.
const BUFFER_BYTES: usize = 64 * 1024;

/// A batch of entries ready to send.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The entries as read, each one LogEntry JSON object.
    pub(crate) entries: Vec<String>,
    /// Position in the input of each entry of `entries`, at the same index.
    pub(crate) locations: Vec<Location>,
    /// Bytes of the input read when the batch was complete, for the progress bar. The
    /// count runs ahead of the batch's last entry by at most the read buffer.
    pub(crate) bytes_read: u64,
    /// Total length of `entries` in bytes.
    pub(crate) text_bytes: usize,
}

/// Event from the reader thread, sent in input order.
#[derive(Debug)]
pub(crate) enum ReadEvent {
    Batch(Batch),
    /// A line that is not a LogEntry. With `strict`, it is the last event, and the entries
    /// read since the last batch are dropped.
    Invalid {
        location: Location,
        message: String,
    },
    /// Reading the input failed. It is the last event, and the entries read since the last
    /// batch are dropped.
    Failed(io::Error),
}

/// Size limits that complete a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Maximum number of entries in a batch.
    pub(crate) entries: usize,
    /// Maximum total length of a batch's entries in bytes, unless a single entry is longer.
    pub(crate) bytes: usize,
}

/// Starts a thread that reads `input` with [`read_entries`] and sends its batches and invalid
/// lines to `events`. The thread ends at the end of the input, after the first invalid line
/// when `strict` is set, after a read error, or when `events` is closed.
pub(crate) fn spawn(
    input: Box<dyn Read + Send>,
    limits: BatchLimits,
    strict: bool,
    events: mpsc::Sender<ReadEvent>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("ingest-reader".to_owned())
        .spawn(move || read_batches(input, limits, strict, &events))
}

/// Wraps the input to count the bytes read from it.
struct CountingReader {
    inner: Box<dyn Read + Send>,
    count: Rc<Cell<u64>>,
}

impl Read for CountingReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.count.set(self.count.get() + read as u64);
        Ok(read)
    }
}

/// Returns the error with which the callback stops [`read_entries`]. It is never reported.
fn stop_reading() -> io::Error {
    io::Error::other("reading stopped")
}

fn read_batches(
    input: Box<dyn Read + Send>,
    limits: BatchLimits,
    strict: bool,
    events: &mpsc::Sender<ReadEvent>,
) {
    let count = Rc::new(Cell::new(0));
    let reader = BufReader::with_capacity(
        BUFFER_BYTES,
        CountingReader {
            inner: input,
            count: count.clone(),
        },
    );
    let send = |event: ReadEvent| events.blocking_send(event).map_err(|_| stop_reading());
    let mut batch = Batch::default();
    let send_batch = |batch: &mut Batch| {
        let mut full = std::mem::take(batch);
        full.bytes_read = count.get();
        send(ReadEvent::Batch(full))
    };

    let result = read_entries(reader, &mut |item| {
        let (text, location) = match item {
            Item::Entry(entry) => match String::from_utf8(entry.text.to_vec()) {
                Ok(text) => (text, entry.location),
                // serde_json rejects invalid UTF-8, so a parsed entry never gets here.
                Err(_) => {
                    return send_invalid(&send, strict, entry.location, "not UTF-8".to_owned())
                }
            },
            Item::Invalid { location, message } => {
                return send_invalid(&send, strict, location, message)
            }
        };
        if !batch.entries.is_empty() && batch.text_bytes + text.len() > limits.bytes {
            send_batch(&mut batch)?;
        }
        batch.text_bytes += text.len();
        batch.entries.push(text);
        batch.locations.push(location);
        if batch.entries.len() >= limits.entries {
            send_batch(&mut batch)?;
        }
        Ok(())
    });

    match result {
        Ok(()) if !batch.entries.is_empty() => {
            let _ = send_batch(&mut batch);
        }
        Ok(()) => {}
        Err(ReadError::Input(err)) => {
            let _ = send(ReadEvent::Failed(err));
        }
        // The callback stopped the reading: strict mode or a closed receiver.
        Err(ReadError::Output(_)) => {}
    }
}

fn send_invalid(
    send: &impl Fn(ReadEvent) -> io::Result<()>,
    strict: bool,
    location: Location,
    message: String,
) -> io::Result<()> {
    send(ReadEvent::Invalid { location, message })?;
    if strict {
        Err(stop_reading())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &'static str, limits: BatchLimits, strict: bool) -> Vec<ReadEvent> {
        let (sender, mut receiver) = mpsc::channel(100);
        let reader = spawn(Box::new(text.as_bytes()), limits, strict, sender)
            .expect("the reader thread starts");
        reader.join().expect("the reader thread does not panic");
        let mut events = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            events.push(event);
        }
        events
    }

    fn lines_of(event: &ReadEvent) -> Vec<Option<u64>> {
        match event {
            ReadEvent::Batch(batch) => batch.locations.iter().map(|l| l.line).collect(),
            other => panic!("expected a batch, found {other:?}"),
        }
    }

    const BY_TWO: BatchLimits = BatchLimits {
        entries: 2,
        bytes: 1024,
    };

    #[test]
    fn batches_keep_line_numbers() {
        let events = read_all("{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}\n", BY_TWO, false);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(lines_of(&events[0]), vec![Some(1), Some(3)]);
        assert_eq!(lines_of(&events[1]), vec![Some(4)]);
    }

    #[test]
    fn invalid_line_skipped() {
        let events = read_all("{\"a\":1}\n{oops\n{\"a\":3}\n", BY_TWO, false);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(&events[0], ReadEvent::Invalid { location, message }
                if location.line == Some(2) && message.starts_with("invalid JSON")),
            "{:?}",
            events[0]
        );
        assert_eq!(lines_of(&events[1]), vec![Some(1), Some(3)]);
    }

    #[test]
    fn strict_drops_unsent_batch() {
        let events = read_all(
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n[]\n{\"a\":5}\n",
            BY_TWO,
            true,
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(lines_of(&events[0]), vec![Some(1), Some(2)]);
        assert!(
            matches!(&events[1], ReadEvent::Invalid { location, .. } if location.line == Some(4)),
            "{:?}",
            events[1]
        );
    }

    #[test]
    fn byte_limit_splits_batch() {
        let limits = BatchLimits {
            entries: 100,
            bytes: 16,
        };
        let events = read_all("{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n", limits, false);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(lines_of(&events[0]), vec![Some(1), Some(2)]);
        assert_eq!(lines_of(&events[1]), vec![Some(3)]);
    }
}
