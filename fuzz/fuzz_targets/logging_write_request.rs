//! Fuzzes the body of Cloud Logging's REST write, `POST /v2/entries:write`: see
//! `sluice::fuzzing::logging_write_request`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice::fuzzing::logging_write_request(data);
});
