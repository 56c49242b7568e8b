//! Measures what publish/ack churn and a large backlog cost the broker over the sled store:
//! the size of the data directory and the process's resident memory.
//!
//! ```text
//! cargo run --release -p sluice-router --example store_churn -- churn 100000 10240
//! cargo run --release -p sluice-router --example store_churn -- backlog 1000000 1024
//! ```
//!
//! `churn CYCLES BYTES` publishes, pulls and acknowledges CYCLES messages of BYTES bytes, in
//! batches of 100, and prints the data directory's size every tenth of the run. `backlog
//! COUNT BYTES` publishes COUNT messages to a subscription without consumers and prints the
//! resident memory as the backlog grows, then after reopening the store on it.

#![allow(
    clippy::print_stdout,
    reason = "a measurement tool: its figures go to stdout"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_router::deliver::Broker;
use sluice_router::store::{NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage};

/// Messages per publish call, and per pull.
const BATCH: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("churn");
    let count: usize = match mode {
        "reopen" => 0,
        _ => args.get(1).map_or(Ok(100_000), |n| n.parse())?,
    };
    let bytes: usize = args.get(2).map_or(Ok(10_240), |n| n.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    match mode {
        "churn" => runtime.block_on(churn(dir.path(), count, bytes)),
        "backlog" => {
            // Filling and reopening run in processes of their own, so that memory the first
            // store freed but the allocator kept does not count, and so that the first
            // store's database lock is gone when the second opens.
            let exe = std::env::current_exe()?;
            let path = dir.path().to_string_lossy().into_owned();
            let fill = vec![
                "fill".to_owned(),
                count.to_string(),
                bytes.to_string(),
                path.clone(),
            ];
            for child_args in [fill, vec!["reopen".to_owned(), path]] {
                let status = std::process::Command::new(&exe)
                    .args(&child_args)
                    .status()?;
                if !status.success() {
                    return Err(format!("{} failed: {status}", child_args[0]).into());
                }
            }
            Ok(())
        }
        "fill" => {
            let path = args.get(3).ok_or("fill needs the data directory")?;
            runtime.block_on(backlog(Path::new(path), count, bytes))
        }
        "reopen" => {
            let path = args.get(1).ok_or("reopen needs the data directory")?;
            runtime.block_on(reopen(Path::new(path)))
        }
        other => Err(format!("unknown mode {other:?}; use churn or backlog").into()),
    }
}

async fn open(dir: &Path) -> Result<Arc<Broker>, Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir)?);
    let broker = Arc::new(Broker::open(store)?);
    broker.create_topic("churn").await?;
    broker
        .create_subscription(SubscriptionSpec {
            ack_deadline_secs: 600,
            ..SubscriptionSpec::new("churn", "churn")
        })
        .await?;
    Ok(broker)
}

fn batch(bytes: usize, first: usize) -> Vec<TopicMessage> {
    (first..first + BATCH)
        .map(|n| {
            let mut data = vec![b'x'; bytes];
            let label = n.to_string();
            data[..label.len().min(bytes)]
                .copy_from_slice(&label.as_bytes()[..label.len().min(bytes)]);
            TopicMessage {
                topic: "churn".to_owned(),
                message: NewMessage {
                    data,
                    attributes: BTreeMap::new(),
                    ordering_key: String::new(),
                },
            }
        })
        .collect()
}

async fn churn(dir: &Path, cycles: usize, bytes: usize) -> Result<(), Box<dyn std::error::Error>> {
    let broker = open(dir).await?;
    let started = Instant::now();
    let report_every = (cycles / 10).max(BATCH);
    let mut max_size = 0;
    let mut done = 0;
    println!("cycles\tdata dir MiB\tRSS MiB\tseconds");
    while done < cycles {
        broker.publish(batch(bytes, done)).await?;
        // A pull reads at most 10 MiB, so large messages take several.
        let mut received = 0;
        while received < BATCH {
            let deliveries = broker.pull("churn", BATCH, Duration::from_secs(5)).await?;
            if deliveries.is_empty() {
                return Err("a published batch was not delivered within 5 s".into());
            }
            received += deliveries.len();
            let ack_ids: Vec<String> = deliveries.into_iter().map(|d| d.ack_id).collect();
            broker.ack("churn", &ack_ids).await?;
        }
        done += BATCH;
        if done % report_every == 0 {
            broker.store().flush().await?;
            let size = dir_size(dir);
            max_size = max_size.max(size);
            println!(
                "{done}\t{:.1}\t{:.1}\t{:.1}",
                mib(size),
                mib(rss_bytes()),
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "written {:.0} MiB in {done} messages; largest data dir {:.1} MiB",
        mib((done * bytes) as u64),
        mib(max_size)
    );
    Ok(())
}

async fn backlog(dir: &Path, count: usize, bytes: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("messages\tdata dir MiB\tRSS MiB\tseconds");
    let started = Instant::now();
    {
        let broker = open(dir).await?;
        let report_every = (count / 10).max(BATCH);
        let mut done = 0;
        while done < count {
            broker.publish(batch(bytes, done)).await?;
            done += BATCH;
            if done % report_every == 0 {
                println!(
                    "{done}\t{:.1}\t{:.1}\t{:.1}",
                    mib(dir_size(dir)),
                    mib(rss_bytes()),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        broker.store().flush().await?;
    }
    Ok(())
}

async fn reopen(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let broker = open(dir).await?;
    let backlog = broker.stats().first().map_or(0, |s| s.backlog);
    println!(
        "reopened with a backlog of {backlog} in {:.1} s: RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(rss_bytes())
    );
    let deliveries = broker.pull("churn", BATCH, Duration::from_secs(5)).await?;
    println!(
        "first pull: {} messages, RSS {:.1} MiB",
        deliveries.len(),
        mib(rss_bytes())
    );
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => folders.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Resident set size from /proc/self/status, or 0 where that file does not exist.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
