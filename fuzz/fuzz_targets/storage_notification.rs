//! Fuzzes the decoding of storage notifications and function events: see
//! `sluice_handlers::fuzzing::storage_notification`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_handlers::fuzzing::storage_notification(data);
});
