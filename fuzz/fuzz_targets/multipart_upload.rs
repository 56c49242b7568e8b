//! Fuzzes Cloud Storage multipart uploads (`multipart/related`): see
//! `sluice::fuzzing::multipart_upload`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice::fuzzing::multipart_upload(data);
});
