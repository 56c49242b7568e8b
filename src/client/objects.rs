//! `sluice objects list|get|delete|patch`: the objects of a bucket, through the server's
//! Cloud Storage JSON API routes.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use super::catalog::{finish_output, write_json_line, write_table, Table};
use super::http::StorageClient;
use super::publish::parse_attribute;
use super::{run_command, ServerArgs};
use crate::cli::{write_stderr, write_stdout};

/// Exit status for invalid arguments, as clap uses it.
const EXIT_USAGE: u8 = 2;

/// List, download, delete and patch the objects of a bucket.
#[derive(Debug, Subcommand)]
pub(crate) enum ObjectsCommand {
    List(ListArgs),
    Get(GetArgs),
    Delete(DeleteArgs),
    Patch(PatchArgs),
}

/// List the objects of a bucket, by name.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Bucket to list
    #[arg(value_name = "BUCKET")]
    bucket: String,

    /// List only objects whose names start with this prefix
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,

    /// Also list noncurrent versions, which versioned buckets keep
    #[arg(long)]
    versions: bool,

    /// Print each object resource as one JSON line, in Cloud Storage's JSON API form, in
    /// place of the table
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Download an object's bytes to a file or to stdout.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Bucket of the object
    #[arg(value_name = "BUCKET")]
    bucket: String,

    /// Object name
    #[arg(value_name = "NAME")]
    name: String,

    /// File to write the bytes to, replacing it; `-` writes to stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,

    /// Generation to download [default: the live version]
    #[arg(long, value_name = "GENERATION")]
    generation: Option<i64>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Delete the live version of an object, or one generation.
///
/// In a versioned bucket, deleting the live version keeps it as a noncurrent version;
/// deleting a generation by number removes it for good.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Bucket of the object
    #[arg(value_name = "BUCKET")]
    bucket: String,

    /// Object name
    #[arg(value_name = "NAME")]
    name: String,

    /// Generation to delete [default: the live version]
    #[arg(long, value_name = "GENERATION")]
    generation: Option<i64>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Change the custom metadata or the content type of an object's live version, and print
/// the updated object resource as JSON.
#[derive(Debug, Args)]
pub(crate) struct PatchArgs {
    /// Bucket of the object
    #[arg(value_name = "BUCKET")]
    bucket: String,

    /// Object name
    #[arg(value_name = "NAME")]
    name: String,

    /// Metadata entry to set, as KEY=VALUE; repeat the option for several entries
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    set: Vec<(String, String)>,

    /// Metadata key to remove; repeat the option for several keys
    #[arg(long = "unset", value_name = "KEY")]
    unset: Vec<String>,

    /// New content type, such as image/jpeg
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs a `sluice objects` command and returns its exit status.
pub(crate) fn run(command: ObjectsCommand) -> ExitCode {
    match command {
        ObjectsCommand::List(args) => run_command(list(args)),
        ObjectsCommand::Get(args) => run_command(get(args)),
        ObjectsCommand::Delete(args) => run_command(delete(args)),
        ObjectsCommand::Patch(args) => match patch_body(&args) {
            Ok(body) => run_command(patch(args, body)),
            Err(message) => {
                write_stderr(format_args!("error: {message}"));
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(prefix) = &args.prefix {
        query.push(("prefix", prefix));
    }
    if args.versions {
        query.push(("versions", "true"));
    }
    let request = client
        .http()
        .get(client.objects_url(&args.bucket))
        .query(&query);
    let action = format!("listing bucket {:?}", args.bucket);
    let response = client.send(request, &action).await?;
    let listing: Value = response
        .json()
        .await
        .map_err(|err| anyhow::anyhow!("{action} failed: the response is not JSON: {err}"))?;
    let items = listing["items"].as_array().cloned().unwrap_or_default();

    let mut out = io::stdout().lock();
    let written = if args.json {
        items
            .iter()
            .try_for_each(|item| write_json_line(&mut out, item))
    } else {
        write_table(&mut out, &objects_table(&items, args.versions))
    };
    finish_output(written.and_then(|()| out.flush()))
}

/// Builds the `objects list` table. With `versions`, a STATE column marks each version as
/// live or noncurrent.
fn objects_table(items: &[Value], versions: bool) -> Table {
    let mut headers = vec!["NAME", "SIZE", "GENERATION", "CONTENT TYPE", "UPDATED"];
    let mut numeric = vec![false, true, true, false, false];
    if versions {
        headers.push("STATE");
        numeric.push(false);
    }
    let rows = items
        .iter()
        .map(|item| {
            let field = |key: &str| item[key].as_str().unwrap_or("-").to_owned();
            let mut row = vec![
                field("name"),
                field("size"),
                field("generation"),
                field("contentType"),
                field("updated"),
            ];
            if versions {
                let state = if item.get("timeDeleted").is_some() {
                    "noncurrent"
                } else {
                    "live"
                };
                row.push(state.to_owned());
            }
            row
        })
        .collect();
    Table {
        headers,
        numeric,
        rows,
    }
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let mut query = vec![("alt", "media".to_owned())];
    if let Some(generation) = args.generation {
        query.push(("generation", generation.to_string()));
    }
    let request = client
        .http()
        .get(client.object_url(&args.bucket, &args.name))
        .query(&query);
    let action = format!("download of {:?} from bucket {:?}", args.name, args.bucket);
    let response = client.send(request, &action).await?;
    if args.output == Path::new("-") {
        write_to_stdout(response, &action).await
    } else {
        write_to_file(response, &args.output, &action).await?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn write_to_stdout(response: reqwest::Response, action: &str) -> anyhow::Result<ExitCode> {
    let mut chunks = response.bytes_stream();
    let mut out = io::stdout().lock();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|err| anyhow::anyhow!("{action} failed while reading: {err}"))?;
        if let Err(err) = out.write_all(&chunk) {
            return finish_output(Err(err));
        }
    }
    finish_output(out.flush())
}

/// Streams the body into `path`. A download that fails part way removes the file, so that
/// no truncated copy is left behind.
async fn write_to_file(
    response: reqwest::Response,
    path: &Path,
    action: &str,
) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|err| anyhow::anyhow!("failed to create {}: {err}", path.display()))?;
    let mut chunks = response.bytes_stream();
    let written = async {
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|err| anyhow::anyhow!("{action} failed while reading: {err}"))?;
            file.write_all(&chunk)
                .await
                .map_err(|err| anyhow::anyhow!("failed to write {}: {err}", path.display()))?;
        }
        file.flush()
            .await
            .map_err(|err| anyhow::anyhow!("failed to write {}: {err}", path.display()))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    written
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let query: Vec<(&str, String)> = args
        .generation
        .map(|generation| ("generation", generation.to_string()))
        .into_iter()
        .collect();
    let request = client
        .http()
        .delete(client.object_url(&args.bucket, &args.name))
        .query(&query);
    let action = format!("delete of {:?} from bucket {:?}", args.name, args.bucket);
    client.send(request, &action).await?;
    match args.generation {
        Some(generation) => write_stdout(format_args!(
            "deleted {} generation {generation}",
            args.name
        )),
        None => write_stdout(format_args!("deleted {}", args.name)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the JSON API body of `objects patch`, or returns why the arguments are invalid.
fn patch_body(args: &PatchArgs) -> Result<Value, String> {
    let mut metadata: BTreeMap<&str, Value> = BTreeMap::new();
    for (key, value) in &args.set {
        if metadata.insert(key, json!(value)).is_some() {
            return Err(format!(
                "--set names the key {key:?} twice; set each key once"
            ));
        }
    }
    for key in &args.unset {
        if metadata.insert(key, Value::Null).is_some() {
            return Err(format!(
                "the key {key:?} is given to --set or --unset twice; name each key once"
            ));
        }
    }
    let mut body = json!({});
    if !metadata.is_empty() {
        body["metadata"] = json!(metadata);
    }
    if let Some(content_type) = &args.content_type {
        body["contentType"] = json!(content_type);
    }
    if body == json!({}) {
        return Err(
            "nothing to change: give --set KEY=VALUE, --unset KEY or --content-type TYPE"
                .to_owned(),
        );
    }
    Ok(body)
}

async fn patch(args: PatchArgs, body: Value) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let request = client
        .http()
        .patch(client.object_url(&args.bucket, &args.name))
        .json(&body);
    let action = format!("patch of {:?} in bucket {:?}", args.name, args.bucket);
    let response = client.send(request, &action).await?;
    let object: Value = response
        .json()
        .await
        .map_err(|err| anyhow::anyhow!("{action} failed: the response is not JSON: {err}"))?;
    write_stdout(format_args!("{object}"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_args(set: &[(&str, &str)], unset: &[&str], content_type: Option<&str>) -> PatchArgs {
        PatchArgs {
            bucket: "b".to_owned(),
            name: "n".to_owned(),
            set: set
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            unset: unset.iter().map(|key| (*key).to_owned()).collect(),
            content_type: content_type.map(str::to_owned),
            server: ServerArgs {
                server: super::super::DEFAULT_SERVER.to_owned(),
            },
        }
    }

    #[test]
    fn patch_body_sets_and_unsets() {
        let body = patch_body(&patch_args(&[("a", "1")], &["b"], Some("text/plain")))
            .expect("a valid patch");
        assert_eq!(
            body,
            json!({"metadata": {"a": "1", "b": null}, "contentType": "text/plain"})
        );
    }

    #[test]
    fn patch_body_rejects_repeats_and_nothing() {
        let repeated = patch_body(&patch_args(&[("a", "1")], &["a"], None));
        assert!(repeated.is_err_and(|err| err.contains("\"a\"")));
        let empty = patch_body(&patch_args(&[], &[], None));
        assert!(empty.is_err_and(|err| err.starts_with("nothing to change")));
    }

    #[test]
    fn versions_table_marks_noncurrent() {
        let items = [
            json!({"name": "a", "size": "3", "generation": "1", "contentType": "text/plain",
                   "updated": "2026-01-01T00:00:00.000Z", "timeDeleted": "2026-01-02T00:00:00.000Z"}),
            json!({"name": "a", "size": "10", "generation": "2", "contentType": "text/plain",
                   "updated": "2026-01-02T00:00:00.000Z"}),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &objects_table(&items, true)).expect("writing to a Vec succeeds");
        let text = String::from_utf8(out).expect("the table is UTF-8");
        assert_eq!(
            text,
            "NAME  SIZE  GENERATION  CONTENT TYPE  UPDATED                   STATE\n\
             a        3           1  text/plain    2026-01-01T00:00:00.000Z  noncurrent\n\
             a       10           2  text/plain    2026-01-02T00:00:00.000Z  live\n"
        );
    }
}
