//! Fuzzes the image path of the thumbnail handler: see
//! `sluice_handlers::fuzzing::thumbnail_image`.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// `render` catches decoder panics and reports them as corrupt images, as the handler
/// dead-letters them. libFuzzer's panic hook would abort on those caught panics, so this
/// target installs a silent hook; a panic that escapes `render` still aborts, because
/// libfuzzer-sys aborts on any panic out of the target.
fn silence_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    silence_caught_panics();
    sluice_handlers::fuzzing::thumbnail_image(data);
});
