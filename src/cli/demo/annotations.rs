//! The annotation part of `sluice demo`: reads what the `annotator` subscription wrote into
//! the bucket `annotations` and prints one line per annotation.

use anyhow::Context as _;
use serde_json::Value;

use super::dead_letters::{pull_dead_letters, DeadLetter};
use crate::cli::write_stdout;

/// The bucket the annotations appear in, and the dead-letter subscription of the annotator, as
/// the built-in configuration names them.
const ANNOTATIONS_BUCKET: &str = "annotations";
const ANNOTATOR_DEAD_LETTER: &str = "annotator-dead-letter";

/// One annotation as the summary lists it.
#[derive(Debug)]
struct AnnotationInfo {
    name: String,
    width: u64,
    height: u64,
    orientation: Option<u64>,
    camera: Option<String>,
    /// The first dominant colour as `#rrggbb`, with its pixel fraction.
    top_color: Option<(String, f64)>,
    hash: String,
}

/// The annotations and the dead-lettered uploads of the annotator.
#[derive(Debug, Default)]
pub(super) struct AnnotationSummary {
    annotations: Vec<AnnotationInfo>,
    dead_letters: Vec<DeadLetter>,
}

impl AnnotationSummary {
    /// Reads the annotations through the Cloud Storage JSON API and pulls the dead letters.
    pub(super) async fn collect(
        http: &reqwest::Client,
        url: &str,
        channel: tonic::transport::Channel,
    ) -> anyhow::Result<Self> {
        let listing: Value = http
            .get(format!("{url}/storage/v1/b/{ANNOTATIONS_BUCKET}/o"))
            .send()
            .await
            .context("listing the annotations failed")?
            .json()
            .await
            .context("the annotation listing is not JSON")?;
        let mut annotations = Vec::new();
        for object in listing["items"].as_array().into_iter().flatten() {
            let name = object["name"].as_str().unwrap_or_default().to_owned();
            let document: Value = http
                .get(format!(
                    "{url}/storage/v1/b/{ANNOTATIONS_BUCKET}/o/{}?alt=media",
                    percent_encoding::utf8_percent_encode(
                        &name,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("reading annotation {name:?} failed"))?
                .json()
                .await
                .with_context(|| format!("annotation {name:?} is not JSON"))?;
            annotations.push(AnnotationInfo::read(name, &document));
        }
        let dead_letters = pull_dead_letters(channel, ANNOTATOR_DEAD_LETTER).await?;
        Ok(Self {
            annotations,
            dead_letters,
        })
    }

    pub(super) fn print(&self) {
        write_stdout(format_args!(
            "\nAnnotations in bucket {ANNOTATIONS_BUCKET}: {}",
            self.annotations.len()
        ));
        for annotation in &self.annotations {
            annotation.print();
        }
        write_stdout(format_args!(
            "Dead-lettered to {ANNOTATOR_DEAD_LETTER}: {}",
            self.dead_letters.len()
        ));
        for dead_letter in &self.dead_letters {
            write_stdout(format_args!(
                "  {}: {}",
                dead_letter.attribute("objectId"),
                dead_letter.reason
            ));
        }
    }
}

impl AnnotationInfo {
    fn read(name: String, document: &Value) -> Self {
        let exif = &document["exif"];
        let camera = [exif["make"].as_str(), exif["model"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let top = &document["imagePropertiesAnnotation"]["dominantColors"]["colors"][0];
        let channel = |key: &str| top["color"][key].as_u64().unwrap_or(0);
        let top_color = top["pixelFraction"].as_f64().map(|fraction| {
            let hex = format!(
                "#{:02x}{:02x}{:02x}",
                channel("red"),
                channel("green"),
                channel("blue")
            );
            (hex, fraction)
        });
        Self {
            name,
            width: document["image"]["width"].as_u64().unwrap_or(0),
            height: document["image"]["height"].as_u64().unwrap_or(0),
            orientation: exif["orientation"].as_u64(),
            camera: (!camera.is_empty()).then_some(camera),
            top_color,
            hash: document["perceptualHash"]["value"]
                .as_str()
                .unwrap_or("-")
                .to_owned(),
        }
    }

    fn print(&self) {
        let orientation = self
            .orientation
            .map_or_else(|| "-".to_owned(), |value| value.to_string());
        let color = self.top_color.as_ref().map_or_else(
            || "-".to_owned(),
            |(hex, fraction)| format!("{hex} ({:.0}%)", fraction * 100.0),
        );
        write_stdout(format_args!(
            "  {:<33} {:>9}  orientation {orientation}  camera {}  top colour {color}  pHash {}",
            self.name,
            format!("{}x{}", self.width, self.height),
            self.camera.as_deref().unwrap_or("-"),
            self.hash
        ));
    }
}
