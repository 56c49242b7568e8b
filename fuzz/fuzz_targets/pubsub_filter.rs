//! Fuzzes the Pub/Sub subscription filter dialect: see `sluice_router::fuzzing::pubsub_filter`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_router::fuzzing::pubsub_filter(data);
});
