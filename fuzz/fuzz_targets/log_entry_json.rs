//! Fuzzes the JSON LogEntry decoding and sink routing of the log router: see
//! `sluice_router::fuzzing::log_entry_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_router::fuzzing::log_entry_json(data);
});
