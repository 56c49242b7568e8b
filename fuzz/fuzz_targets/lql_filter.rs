//! Fuzzes the Logging query language: see `sluice_router::fuzzing::lql_filter`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_router::fuzzing::lql_filter(data);
});
