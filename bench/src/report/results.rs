//! Reading the results directory that `scripts/bench` fills, and the medians over rounds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// One line of `messaging.jsonl`: an outcome of `sluice-loadgen`, or its failure.
#[derive(Debug, Deserialize)]
pub(crate) struct RunLine {
    pub(crate) scenario: String,
    pub(crate) system: String,
    #[serde(default)]
    pub(crate) publishers: usize,
    #[serde(default)]
    pub(crate) batch: usize,
    #[serde(default)]
    pub(crate) sinks: Option<usize>,
    #[serde(default)]
    pub(crate) messages_per_second: Option<f64>,
    #[serde(default)]
    pub(crate) latency_us: Option<LatencyLine>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Deserialize)]
pub(crate) struct LatencyLine {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
}

/// The name of one measured case: scenario and shape, without the system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Case {
    pub(crate) scenario: String,
    pub(crate) publishers: usize,
    pub(crate) batch: usize,
    pub(crate) sinks: usize,
}

/// Every run of one case on one system.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    pub(crate) succeeded: usize,
    pub(crate) rates: Vec<f64>,
    pub(crate) p50_us: Vec<f64>,
    pub(crate) p99_us: Vec<f64>,
    pub(crate) p999_us: Vec<f64>,
    pub(crate) failures: Vec<String>,
}

impl Runs {
    pub(crate) fn attempted(&self) -> usize {
        self.succeeded + self.failures.len()
    }
}

/// A memory line of `memory.jsonl`: sluice's resident set in KiB at named moments.
pub(crate) type MemoryLine = BTreeMap<String, serde_json::Value>;

/// One thumbnail command of a hyperfine export: its name and run times in seconds.
#[derive(Debug, Deserialize)]
pub(crate) struct TimedCommand {
    pub(crate) command: String,
    pub(crate) times: Vec<f64>,
}

#[derive(Debug, Deserialize)]
struct HyperfineExport {
    results: Vec<TimedCommand>,
}

/// The timings of one photo in one mode (`default`, `1` thread or `batch`).
#[derive(Debug)]
pub(crate) struct PhotoTimings {
    pub(crate) photo: String,
    pub(crate) mode: String,
    pub(crate) commands: Vec<TimedCommand>,
}

/// Peak memory of one thumbnail command on one photo.
#[derive(Debug, Deserialize)]
pub(crate) struct PeakMemory {
    pub(crate) photo: String,
    pub(crate) tool: String,
    pub(crate) peak_kib: u64,
}

/// Everything one `scripts/bench` run recorded.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// `label: value` lines describing the machine, versions and commands.
    pub(crate) machine: Vec<String>,
    pub(crate) messaging: BTreeMap<Case, BTreeMap<String, Runs>>,
    pub(crate) memory: Vec<MemoryLine>,
    pub(crate) thumbnails: Vec<PhotoTimings>,
    pub(crate) thumbnail_memory: Vec<PeakMemory>,
}

impl Results {
    /// Reads `dir`. Missing files leave their part empty, because a run may skip a part.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Results> {
        if !dir.is_dir() {
            anyhow::bail!(
                "the results directory {} does not exist; pass the directory scripts/bench \
                 wrote, such as target/bench",
                dir.display()
            );
        }
        let known = ["messaging.jsonl", "memory.jsonl", "thumbnails"];
        if !known.iter().any(|name| dir.join(name).exists()) {
            anyhow::bail!(
                "{} holds none of {}; pass the directory scripts/bench wrote, such as \
                 target/bench",
                dir.display(),
                known.join(", ")
            );
        }
        let mut results = Results::default();
        if let Some(text) = read_optional(&dir.join("machine.txt"))? {
            results.machine = text.lines().map(str::to_owned).collect();
        }
        if let Some(text) = read_optional(&dir.join("messaging.jsonl"))? {
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let run: RunLine = serde_json::from_str(line).with_context(|| {
                    format!("messaging.jsonl line {}: not an outcome line", number + 1)
                })?;
                results.add_run(run);
            }
        }
        if let Some(text) = read_optional(&dir.join("memory.jsonl"))? {
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let memory = serde_json::from_str(line).with_context(|| {
                    format!("memory.jsonl line {}: not a JSON object", number + 1)
                })?;
                results.memory.push(memory);
            }
        }
        if let Some(text) = read_optional(&dir.join("thumbnail-memory.jsonl"))? {
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let peak = serde_json::from_str(line).with_context(|| {
                    format!(
                        "thumbnail-memory.jsonl line {}: not a peak line",
                        number + 1
                    )
                })?;
                results.thumbnail_memory.push(peak);
            }
        }
        results.thumbnails = read_thumbnails(&dir.join("thumbnails"))?;
        Ok(results)
    }

    fn add_run(&mut self, run: RunLine) {
        // A latency run's shape is its rate, which every run of the case shares, and its
        // failure line does not state the batch it would have used.
        let (publishers, batch) = if run.scenario == "latency" {
            (1, 0)
        } else {
            (run.publishers, run.batch)
        };
        let case = Case {
            scenario: run.scenario,
            publishers,
            batch,
            sinks: run.sinks.unwrap_or(0),
        };
        let runs = self
            .messaging
            .entry(case)
            .or_default()
            .entry(run.system)
            .or_default();
        if let Some(error) = run.error {
            runs.failures.push(error);
            return;
        }
        runs.succeeded += 1;
        if let Some(rate) = run.messages_per_second {
            runs.rates.push(rate);
        }
        if let Some(latency) = run.latency_us {
            runs.p50_us.push(latency.p50 as f64);
            runs.p99_us.push(latency.p99 as f64);
            runs.p999_us.push(latency.p999 as f64);
        }
    }

    /// Returns the median rate of sluice's latency runs in messages per second.
    pub(crate) fn latency_rate(&self) -> Option<f64> {
        let cases = self.cases("latency");
        let runs = cases.first()?.1.get("sluice")?;
        median(runs.rates.clone())
    }

    /// Returns the largest number of runs any system made of one case: the rounds of the run.
    pub(crate) fn rounds(&self) -> usize {
        self.messaging
            .values()
            .flat_map(|systems| systems.values())
            .map(Runs::attempted)
            .max()
            .unwrap_or(0)
    }

    /// The cases of one scenario, in order.
    pub(crate) fn cases(&self, scenario: &str) -> Vec<(&Case, &BTreeMap<String, Runs>)> {
        self.messaging
            .iter()
            .filter(|(case, _)| case.scenario == scenario)
            .collect()
    }

    /// The median of a memory field over the lines of one kind, in MiB.
    pub(crate) fn memory_mib(&self, kind: &str, field: &str) -> Option<f64> {
        let values = self
            .memory
            .iter()
            .filter(|line| line.get("scenario").and_then(|v| v.as_str()) == Some(kind))
            .filter_map(|line| line.get(field).and_then(serde_json::Value::as_f64))
            .map(|kib| kib / 1024.0)
            .collect();
        median(values)
    }

    /// A field of the first memory line of one kind, as written.
    pub(crate) fn memory_field(&self, kind: &str, field: &str) -> Option<&serde_json::Value> {
        self.memory
            .iter()
            .find(|line| line.get("scenario").and_then(|v| v.as_str()) == Some(kind))
            .and_then(|line| line.get(field))
    }
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads the hyperfine exports named `PHOTO--MODE.json`, sorted by photo, then mode.
fn read_thumbnails(dir: &Path) -> anyhow::Result<Vec<PhotoTimings>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut timings = Vec::with_capacity(paths.len());
    for path in paths {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some((photo, mode)) = stem.split_once("--") else {
            anyhow::bail!("{} is not named PHOTO--MODE.json", path.display());
        };
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let export: HyperfineExport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a hyperfine JSON export", path.display()))?;
        timings.push(PhotoTimings {
            photo: photo.to_owned(),
            mode: mode.to_owned(),
            commands: export.results,
        });
    }
    // Default threads, then one thread, then batches, as the page's tables read best.
    let rank = |mode: &str| match mode {
        "default" => 0,
        "1" => 1,
        _ => 2,
    };
    timings
        .sort_by(|a, b| (a.photo.as_str(), rank(&a.mode)).cmp(&(b.photo.as_str(), rank(&b.mode))));
    Ok(timings)
}

/// The median of `values`, the mean of the middle two for an even count.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_results_directory_is_rejected() {
        let error = Results::read(Path::new("/nonexistent/bench")).expect_err("rejected");
        assert!(error.to_string().contains("/nonexistent/bench"));
        let empty = std::env::temp_dir().join(format!("sluice-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("a temporary directory");
        let error = Results::read(&empty).expect_err("rejected");
        assert!(error.to_string().contains("holds none of"));
        std::fs::remove_dir_all(empty).ok();
    }

    #[test]
    fn latency_failures_join_their_case() {
        let mut results = Results::default();
        for line in [
            r#"{"scenario":"latency","system":"sluice","publishers":1,"batch":10,"latency_us":{"p50":1,"p99":2,"p999":3}}"#,
            r#"{"scenario":"latency","system":"sluice","publishers":1,"batch":0,"error":"behind"}"#,
        ] {
            results.add_run(serde_json::from_str(line).expect("a valid line"));
        }
        let cases = results.cases("latency");
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].1["sluice"].attempted(), 2);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn failed_runs_are_counted_per_case() {
        let mut results = Results::default();
        for line in [
            r#"{"scenario":"publish","system":"sluice","publishers":1,"batch":100,"messages_per_second":10.0}"#,
            r#"{"scenario":"publish","system":"sluice","publishers":1,"batch":100,"error":"timed out"}"#,
            r#"{"scenario":"publish","system":"emulator","publishers":1,"batch":100,"messages_per_second":5.0}"#,
        ] {
            results.add_run(serde_json::from_str(line).expect("a valid line"));
        }
        let cases = results.cases("publish");
        assert_eq!(cases.len(), 1);
        let sluice = &cases[0].1["sluice"];
        assert_eq!(sluice.attempted(), 2);
        assert_eq!(sluice.failures, vec!["timed out".to_owned()]);
        assert_eq!(median(sluice.rates.clone()), Some(10.0));
    }
}
