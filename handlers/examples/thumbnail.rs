//! Renders one thumbnail with sluice's renderer: `thumbnail IN OUT [WIDTHxHEIGHT]`.
//!
//! Reads the image file IN, writes the thumbnail to OUT (JPEG, or PNG for sources with an
//! alpha channel, whatever OUT's extension is) and fits it into WIDTHxHEIGHT, 256x256 by
//! default. `scripts/bench-thumbnails` times it against vipsthumbnail and ImageMagick.

use std::process::ExitCode;

use sluice_handlers::thumbnail::{render, ThumbnailOptions};

const USAGE: &str = "usage: thumbnail IN OUT [WIDTHxHEIGHT]";

#[allow(
    clippy::print_stderr,
    reason = "a command-line example reports errors on stderr"
)]
fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("thumbnail: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: Vec<String>) -> Result<(), String> {
    let (input, output, size) = match arguments.as_slice() {
        [input, output] => (input, output, None),
        [input, output, size] => (input, output, Some(size)),
        _ => return Err(USAGE.to_owned()),
    };
    let mut options = ThumbnailOptions::default();
    if let Some(size) = size {
        (options.max_width, options.max_height) = parse_size(size)?;
    }
    let bytes = std::fs::read(input).map_err(|error| format!("cannot read {input}: {error}"))?;
    let thumbnail = render(&bytes, &options).map_err(|error| format!("{input}: {error}"))?;
    std::fs::write(output, &thumbnail.bytes)
        .map_err(|error| format!("cannot write {output}: {error}"))
}

fn parse_size(size: &str) -> Result<(u32, u32), String> {
    let invalid = || format!("invalid size {size:?}: expected WIDTHxHEIGHT, for example 256x256");
    let (width, height) = size.split_once('x').ok_or_else(invalid)?;
    let width = width.parse().map_err(|_| invalid())?;
    let height = height.parse().map_err(|_| invalid())?;
    Ok((width, height))
}
