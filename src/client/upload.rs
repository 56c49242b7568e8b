//! `sluice upload`: uploads files to a bucket through `POST /upload/{bucket}`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::http::StorageClient;
use super::{run_command, ServerArgs};
use crate::cli::{write_stderr, write_stdout};

/// Exit status for invalid arguments, as clap uses it.
const EXIT_USAGE: u8 = 2;

/// Details printed by `sluice upload --help`.
const AFTER_LONG_HELP: &str = "\
Each file is sent in its own request, in the order given, and the command stops
at the first failure. The server publishes the bucket's notifications for each
object, such as OBJECT_FINALIZE.

Output: one line per stored object with its name, generation and size in
bytes, separated by tabs.

Examples:
  sluice upload photos/*.jpg --bucket uploads
  sluice upload ./cat.jpg --bucket uploads --name pets/cat.jpg";

/// Upload files to a bucket and print each object's name, generation and size.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct UploadArgs {
    /// Files to upload
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,

    /// Bucket that receives the objects
    #[arg(long, value_name = "BUCKET")]
    bucket: String,

    /// Object name, for a single FILE [default: the file's name without its folder]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Content type of every object [default: guessed from each file's extension,
    /// application/octet-stream when unknown]
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `sluice upload` and returns its exit status.
pub(crate) fn run(args: UploadArgs) -> ExitCode {
    if args.name.is_some() && args.files.len() > 1 {
        write_stderr(format_args!(
            "error: --name names one object, but {} files were given; upload the files \
             one at a time, or leave out --name to use each file's name",
            args.files.len()
        ));
        return ExitCode::from(EXIT_USAGE);
    }
    run_command(upload(args))
}

async fn upload(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    for path in &args.files {
        let name = match &args.name {
            Some(name) => name.clone(),
            None => default_name(path)?,
        };
        let object = upload_file(&client, &args, path, &name).await?;
        let field = |key: &str| object[key].as_str().unwrap_or("-").to_owned();
        write_stdout(format_args!(
            "{}\t{}\t{}",
            field("name"),
            field("generation"),
            field("size")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns a file's name without its folder, as the default object name.
fn default_name(path: &Path) -> anyhow::Result<String> {
    let name = path.file_name().ok_or_else(|| {
        anyhow::anyhow!("{} has no file name; give one with --name", path.display())
    })?;
    name.to_str().map(str::to_owned).ok_or_else(|| {
        anyhow::anyhow!(
            "the file name of {} is not UTF-8, which object names must be; give one with --name",
            path.display()
        )
    })
}

/// Uploads one file as the object `name` and returns the object resource.
async fn upload_file(
    client: &StorageClient,
    args: &UploadArgs,
    path: &Path,
    name: &str,
) -> anyhow::Result<Value> {
    // Part::file streams the file and guesses its content type from the extension.
    let mut part = Part::file(path)
        .await
        .map_err(|err| anyhow::anyhow!("failed to open {}: {err}", path.display()))?;
    if let Some(content_type) = &args.content_type {
        part = part.mime_str(content_type).map_err(|err| {
            anyhow::anyhow!("invalid --content-type {content_type:?}: {err}; use a media type such as image/jpeg")
        })?;
    }
    // The `name` part carries the object name as plain UTF-8, which a filename in the
    // Content-Disposition header cannot do for every name.
    let form = Form::new().text("name", name.to_owned()).part("file", part);
    let request = client
        .http()
        .post(client.upload_url(&args.bucket))
        .multipart(form);
    let action = format!("upload of {} to bucket {:?}", path.display(), args.bucket);
    let response = client.send(request, &action).await?;
    let body: Value = response
        .json()
        .await
        .map_err(|err| anyhow::anyhow!("{action} failed: the response is not JSON: {err}"))?;
    body["objects"]
        .get(0)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{action} failed: the response lists no object: {body}"))
}
