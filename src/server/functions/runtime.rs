//! The language runtimes of deployed functions: a copy of the source per version, and the
//! dependencies, installed once per set of dependency files.
//!
//! Python functions get a virtual environment with the folder's `requirements.txt` and
//! [`PYTHON_FRAMEWORK`]; Node functions get `node_modules` from `npm install` of the
//! folder's `package.json` (and `package-lock.json`) with [`NODE_FRAMEWORK`] added. Each is
//! built under the cache folder in a directory named by the SHA-256 of the dependency files
//! and the framework version, so that versions with the same dependencies share one, and a
//! `.ready` marker is written last. A file lock (flock) per directory keeps two servers that
//! share the cache from building the same one at once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};
use tokio::process::Command;
use tracing::{info, warn};

use super::spec::{DeploySpec, Language};

/// The functions-framework release installed into every Python function's environment,
/// unless `requirements.txt` pins another.
pub(crate) const PYTHON_FRAMEWORK: &str = "functions-framework>=3.10,<4";

/// The functions-framework release installed for Node functions whose `package.json` does
/// not list it.
pub(crate) const NODE_FRAMEWORK: &str = "@google-cloud/functions-framework@^5";

/// The npm package name of functions-framework for Node.
const NODE_FRAMEWORK_PACKAGE: &str = "@google-cloud/functions-framework";

/// The preload script that makes every `listen` without a host bind to 127.0.0.1, because
/// functions-framework for Node 5.x has no host option and would listen on every interface.
const NODE_LOOPBACK_PRELOAD: &str = r#"// Written by sluice: binds servers that name no host to 127.0.0.1, and exits once stdin,
// a pipe from sluice, closes, so that the function does not outlive a killed sluice.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') {
      args.splice(1, 0, '127.0.0.1');
    }
  } else if (first && typeof first === 'object' && first.port !== undefined && !first.host) {
    args[0] = Object.assign({}, first, { host: '127.0.0.1' });
  }
  return listen.apply(this, args);
};
"#;

/// The program that `python -c` runs in place of `python -m functions_framework`: it also
/// exits once its stdin, a pipe from sluice, closes, so that a function does not outlive a
/// sluice that was killed. gunicorn's workers exit once their master is gone. The thread
/// reads file descriptor 0 directly, because a daemon thread blocked in the buffered
/// `sys.stdin` makes the interpreter abort with a fatal error when it exits.
const PYTHON_BOOTSTRAP: &str = "\
import os, runpy, threading
def _exit_when_sluice_is_gone():
    while os.read(0, 4096):
        pass
    os._exit(0)
threading.Thread(target=_exit_when_sluice_is_gone, daemon=True).start()
runpy.run_module('functions_framework', run_name='__main__', alter_sys=True)
";

/// Folders left out of the source copy: installed dependencies and caches, which the
/// runtime rebuilds.
const SKIPPED_FOLDERS: [&str; 5] = ["node_modules", ".venv", "venv", "__pycache__", ".git"];

/// The command that starts one function process, without its port.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The program to run.
    pub(crate) program: PathBuf,
    /// Arguments before the port.
    pub(crate) args: Vec<OsString>,
    /// The working directory: the version's source copy.
    pub(crate) dir: PathBuf,
    /// The language, which decides how the port is passed.
    pub(crate) language: Language,
}

impl Launch {
    /// Returns the arguments that select `port`.
    pub(crate) fn port_args(&self, port: u16) -> Vec<String> {
        match self.language {
            Language::Python => vec!["--port".to_owned(), port.to_string()],
            Language::Nodejs => vec![format!("--port={port}")],
        }
    }
}

/// Copies the source folder to `dest`, leaving out [`SKIPPED_FOLDERS`] and every folder that
/// contains one of the `protected` folders. Those are the canonical paths of the server's
/// functions folder and runtime cache. So a source folder that contains the data
/// directory, such as `.` beside `./sluice-data`, is not copied into itself.
///
/// A symbolic link to a file inside the source folder is copied as that file, and one to a
/// folder inside it becomes a relative link to the same folder of the copy. A link that
/// leads out of the source folder fails the copy, and a dangling link is skipped with a
/// warning, as editors leave them for lock files.
///
/// # Errors
///
/// Fails when a file cannot be read or written, or a link leads out of the folder, naming
/// it.
pub(crate) fn copy_source(source: &Path, dest: &Path, protected: &[PathBuf]) -> anyhow::Result<()> {
    let root = std::fs::canonicalize(source)
        .with_context(|| format!("failed to read {}", source.display()))?;
    // The destination is protected too, for a source folder inside the functions folder.
    std::fs::create_dir_all(dest)
        .with_context(|| format!("failed to create {}", dest.display()))?;
    let mut protected = protected.to_vec();
    protected.push(
        std::fs::canonicalize(dest)
            .with_context(|| format!("failed to read {}", dest.display()))?,
    );
    copy_tree(&root, &root, dest, &protected)
}

/// Returns whether the source folder `path` is, or contains, one of the `protected` folders.
fn holds_protected(path: &Path, protected: &[PathBuf]) -> bool {
    protected.iter().any(|folder| folder.starts_with(path))
}

/// Copies the folder `dir` of the source folder `root` to `dest`; both paths are canonical.
fn copy_tree(root: &Path, dir: &Path, dest: &Path, protected: &[PathBuf]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest)
        .with_context(|| format!("failed to create {}", dest.display()))?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        let file_type = entry
            .file_type()
            .with_context(|| format!("failed to read {}", path.display()))?;
        if is_skipped(&entry.file_name()) && !file_type.is_file() {
            continue;
        }
        if file_type.is_dir() && holds_protected(&path, protected) {
            warn!(folder = %path.display(), "left out of the function's source copy: it is or contains the server's functions folder, runtime cache or the copy itself");
        } else if file_type.is_dir() {
            copy_tree(root, &path, &target, protected)?;
        } else if file_type.is_symlink() {
            copy_link(root, &path, &target)?;
        } else {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

/// Copies the symbolic link `link` of the source folder `root` to `target`.
fn copy_link(root: &Path, link: &Path, target: &Path) -> anyhow::Result<()> {
    match resolve_link(root, link)? {
        LinkTarget::Inside(resolved) if resolved.is_dir() => {
            let parent = link.parent().unwrap_or(root);
            let relative = relative_path(parent, &resolved);
            std::os::unix::fs::symlink(&relative, target)
                .with_context(|| format!("failed to create the link {}", target.display()))
        }
        LinkTarget::Inside(resolved) => copy_file(&resolved, target),
        LinkTarget::Outside(resolved) => {
            Err(anyhow::anyhow!(outside_link_message(root, link, &resolved)))
        }
        LinkTarget::Dangling => {
            let points_to = std::fs::read_link(link).unwrap_or_default();
            warn!(
                link = %link.display(),
                target = %points_to.display(),
                "skipped a dangling symbolic link in the function source"
            );
            Ok(())
        }
    }
}

fn copy_file(path: &Path, target: &Path) -> anyhow::Result<()> {
    std::fs::copy(path, target)
        .map(drop)
        .with_context(|| format!("failed to copy {} to {}", path.display(), target.display()))
}

fn is_skipped(name: &std::ffi::OsStr) -> bool {
    SKIPPED_FOLDERS.iter().any(|skipped| name == *skipped)
}

/// The destination of a symbolic link of the source folder.
#[derive(Debug, PartialEq, Eq)]
enum LinkTarget {
    /// A file or folder inside the source folder, by its canonical path.
    Inside(PathBuf),
    /// A canonical path outside the source folder.
    Outside(PathBuf),
    /// Nothing: the target is missing or the links form a loop.
    Dangling,
}

/// Resolves `link` against the canonical source folder `root`.
fn resolve_link(root: &Path, link: &Path) -> anyhow::Result<LinkTarget> {
    match std::fs::canonicalize(link) {
        Ok(resolved) if resolved.starts_with(root) => Ok(LinkTarget::Inside(resolved)),
        Ok(resolved) => Ok(LinkTarget::Outside(resolved)),
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                || err.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) =>
        {
            Ok(LinkTarget::Dangling)
        }
        Err(err) => Err(err).with_context(|| format!("failed to resolve {}", link.display())),
    }
}

fn outside_link_message(root: &Path, link: &Path, resolved: &Path) -> String {
    format!(
        "--source {}: the symbolic link {} points to {}, outside the source folder; sluice \
         deploys only the folder's own files, so copy the target into the folder or remove \
         the link",
        root.display(),
        link.strip_prefix(root).unwrap_or(link).display(),
        resolved.display()
    )
}

/// Returns the path that leads from the folder `from` to `to`, both absolute and canonical.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// Returns one message per symbolic link under the canonical folder `dir` that leads out
/// of the source folder `root`, leaving out [`SKIPPED_FOLDERS`].
fn outside_links(
    root: &Path,
    dir: &Path,
    protected: &[PathBuf],
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("failed to read {}", path.display()))?;
        if is_skipped(&entry.file_name()) && !file_type.is_file() {
            continue;
        }
        if file_type.is_dir() && holds_protected(&path, protected) {
            continue;
        } else if file_type.is_dir() {
            outside_links(root, &path, protected, problems)?;
        } else if file_type.is_symlink() {
            if let LinkTarget::Outside(resolved) = resolve_link(root, &path)? {
                problems.push(outside_link_message(root, &path, &resolved));
            }
        }
    }
    Ok(())
}

/// Checks that the source has the file functions-framework loads, and no symbolic link
/// that leads out of it. Folders that hold one of the `protected` folders are not read, as
/// [`copy_source`] leaves them out.
///
/// # Errors
///
/// Names the missing file, or every link that leads out of the folder with its target.
pub(crate) fn check_source(
    language: Language,
    source: &Path,
    protected: &[PathBuf],
) -> anyhow::Result<()> {
    let needed = match language {
        Language::Python => Some("main.py"),
        Language::Nodejs if source.join("package.json").is_file() => None,
        Language::Nodejs => Some("index.js"),
    };
    if let Some(needed) = needed {
        if !source.join(needed).is_file() {
            anyhow::bail!(
                "--source {} has no {needed}: functions-framework loads the function from it",
                source.display()
            );
        }
    }
    let root = std::fs::canonicalize(source)
        .with_context(|| format!("failed to read {}", source.display()))?;
    // The functions folder lies directly in the data directory, whose store and objects the
    // copy would take along.
    let is_data_directory = |folder: &PathBuf| {
        folder.parent() == Some(root.as_path())
            && folder.file_name() == Some(std::ffi::OsStr::new("functions"))
    };
    if protected.iter().any(is_data_directory) {
        anyhow::bail!(
            "--source {} is the server's data directory; put the function in a folder of \
             its own",
            source.display()
        );
    }
    let mut problems = Vec::new();
    outside_links(&root, &root, protected, &mut problems)?;
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}

/// Installs the dependencies of the source copy in `version_dir` under `cache`, if needed,
/// and returns the command that starts the function.
///
/// # Errors
///
/// Fails when the interpreter is missing or the installation fails, with the end of its
/// output.
pub(crate) async fn prepare(
    spec: &DeploySpec,
    language: Language,
    version_dir: &Path,
    cache: &Path,
) -> anyhow::Result<Launch> {
    tokio::fs::create_dir_all(cache)
        .await
        .with_context(|| format!("failed to create the runtime cache {}", cache.display()))?;
    match language {
        Language::Python => prepare_python(spec, version_dir, cache).await,
        Language::Nodejs => prepare_node(spec, version_dir, cache).await,
    }
}

async fn prepare_python(
    spec: &DeploySpec,
    version_dir: &Path,
    cache: &Path,
) -> anyhow::Result<Launch> {
    let requirements = version_dir.join("requirements.txt");
    // The walk reads files, which would hold up the runtime's worker thread.
    let local = {
        let (version_dir, requirements) = (version_dir.to_owned(), requirements.clone());
        tokio::task::spawn_blocking(move || {
            local_requirements_manifest(&version_dir, &requirements)
        })
        .await
        .context("the dependency scan failed")??
    };
    let key = dependency_key(
        "python",
        &format!("{PYTHON_FRAMEWORK}\0{local}"),
        &[&requirements],
    )?;
    let env_dir = cache.join(format!("python-{key}"));
    let python = env_dir.join("bin").join("python");
    build_once(&env_dir, async {
        run(
            Command::new(python_interpreter())
                .args(["-m", "venv"])
                .arg(&env_dir),
            "python3 -m venv",
        )
        .await?;
        let mut install = Command::new(&python);
        // pip reads the local paths of requirements.txt, such as `./lib`, from its working
        // folder.
        install.current_dir(version_dir);
        install.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            PYTHON_FRAMEWORK,
        ]);
        if requirements.is_file() {
            install.arg("-r").arg(&requirements);
        }
        run(&mut install, "pip install").await
    })
    .await?;
    let args = [
        "-c",
        PYTHON_BOOTSTRAP,
        "--target",
        spec.entry_point.as_str(),
        "--signature-type",
        spec.signature_type.as_str(),
        "--host",
        "127.0.0.1",
        "--source",
    ];
    let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
    args.push(version_dir.join("main.py").into_os_string());
    Ok(Launch {
        program: python,
        args,
        dir: version_dir.to_owned(),
        language: Language::Python,
    })
}

async fn prepare_node(
    spec: &DeploySpec,
    version_dir: &Path,
    cache: &Path,
) -> anyhow::Result<Launch> {
    let package = version_dir.join("package.json");
    let lock = version_dir.join("package-lock.json");
    let key = dependency_key("nodejs", NODE_FRAMEWORK, &[&package, &lock])?;
    let modules_dir = cache.join(format!("nodejs-{key}"));
    let lists_framework = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| json["dependencies"].get(NODE_FRAMEWORK_PACKAGE).is_some());
    build_once(&modules_dir, async {
        tokio::fs::create_dir_all(&modules_dir).await?;
        if package.is_file() {
            tokio::fs::copy(&package, modules_dir.join("package.json")).await?;
        } else {
            tokio::fs::write(
                modules_dir.join("package.json"),
                r#"{"name": "sluice-function", "private": true}"#,
            )
            .await?;
        }
        if lock.is_file() {
            tokio::fs::copy(&lock, modules_dir.join("package-lock.json")).await?;
        }
        let mut install = Command::new("npm");
        install
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&modules_dir);
        if !lists_framework {
            install.args(["--no-save", NODE_FRAMEWORK]);
        }
        run(&mut install, "npm install").await
    })
    .await?;

    let node_modules = modules_dir.join("node_modules");
    link_node_modules(&node_modules, &version_dir.join("node_modules")).await?;
    let framework_main = node_framework_main(&node_modules)?;
    let preload = cache.join("bind-loopback.js");
    tokio::fs::write(&preload, NODE_LOOPBACK_PRELOAD)
        .await
        .with_context(|| format!("failed to write {}", preload.display()))?;
    let args: Vec<OsString> = vec![
        "--require".into(),
        preload.into_os_string(),
        framework_main.into_os_string(),
        format!("--target={}", spec.entry_point).into(),
        format!("--signature-type={}", spec.signature_type.as_str()).into(),
        format!("--source={}", version_dir.display()).into(),
    ];
    Ok(Launch {
        program: PathBuf::from("node"),
        args,
        dir: version_dir.to_owned(),
        language: Language::Nodejs,
    })
}

/// Points the source copy's `node_modules` at the installed modules. A link left by an earlier
/// start may point into another runtime cache (after `SLUICE_FUNCTIONS_CACHE_DIR` changed or
/// the data folder moved), where it would load a second functions-framework, so it is
/// replaced.
async fn link_node_modules(node_modules: &Path, link: &Path) -> anyhow::Result<()> {
    if let Ok(target) = tokio::fs::read_link(link).await {
        if target == node_modules {
            return Ok(());
        }
        tokio::fs::remove_file(link)
            .await
            .with_context(|| format!("failed to replace the stale link {}", link.display()))?;
    }
    tokio::fs::symlink(node_modules, link)
        .await
        .with_context(|| format!("failed to link {}", link.display()))
}

/// Returns the script that the `functions-framework` bin of the installed package runs.
fn node_framework_main(node_modules: &Path) -> anyhow::Result<PathBuf> {
    let package_dir = node_modules.join(NODE_FRAMEWORK_PACKAGE);
    let manifest = package_dir.join("package.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} is missing after npm install; add {NODE_FRAMEWORK_PACKAGE} to package.json",
            manifest.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", manifest.display()))?;
    let bin = match &json["bin"] {
        serde_json::Value::String(path) => Some(path.as_str()),
        serde_json::Value::Object(bins) => bins.get("functions-framework").and_then(|v| v.as_str()),
        _ => None,
    };
    let bin = bin.with_context(|| {
        format!(
            "{} names no functions-framework program",
            manifest.display()
        )
    })?;
    Ok(package_dir.join(bin))
}

/// Returns the Python interpreter that creates virtual environments:
/// `SLUICE_FUNCTIONS_PYTHON`, or `python3` from the PATH.
fn python_interpreter() -> OsString {
    std::env::var_os("SLUICE_FUNCTIONS_PYTHON").unwrap_or_else(|| "python3".into())
}

/// Returns what `requirements.txt` pulls in besides its own text, for the environment's key.
/// That is the files it includes with `-r` or `-c` (at any depth) and each file under the
/// local paths it installs from, each with its path and the SHA-256 of its contents. So a
/// changed nested file or local package gets an environment of its own. An editable install
/// (`-e ./lib`) points into this version's folder, so its environment is this version's
/// alone and the key names the folder. Returns an empty string when the file is missing or
/// pulls in nothing.
fn local_requirements_manifest(version_dir: &Path, requirements: &Path) -> anyhow::Result<String> {
    let mut manifest = String::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut pending = vec![requirements.to_owned()];
    while let Some(file) = pending.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            // pip reports a missing nested file; the key only has to differ.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if file != requirements {
                    manifest.push_str(&format!("{} missing\n", file.display()));
                }
                continue;
            }
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", file.display()))
            }
        };
        if file != requirements {
            let name = file.strip_prefix(version_dir).unwrap_or(&file);
            let digest = hex::encode(Sha256::digest(text.as_bytes()));
            manifest.push_str(&format!("{} {digest}\n", name.display()));
        }
        // pip reads a nested file relative to the file that names it.
        let folder = file.parent().unwrap_or(version_dir);
        pending.extend(nested_requirements(&text).map(|nested| folder.join(nested)));
        for (path, editable) in local_requirements(&text) {
            if editable {
                manifest.push_str(&format!("editable in {}\n", version_dir.display()));
            }
            let mut files = Vec::new();
            list_files(&version_dir.join(&path), &mut files)?;
            files.sort();
            manifest.push_str(&format!("{path}: {} files\n", files.len()));
            for file in files {
                // A link counts by its target, so that a link to a folder is not read as a
                // file and a cycle of links ends.
                let bytes = match std::fs::read_link(&file) {
                    Ok(target) => target.into_os_string().into_encoded_bytes(),
                    Err(_) => std::fs::read(&file)
                        .with_context(|| format!("failed to read {}", file.display()))?,
                };
                let name = file.strip_prefix(version_dir).unwrap_or(&file);
                manifest.push_str(&format!(
                    "{} {}\n",
                    name.display(),
                    hex::encode(Sha256::digest(&bytes))
                ));
            }
        }
    }
    Ok(manifest)
}

/// Returns the files that the lines of a requirements file include: `-r FILE`,
/// `--requirement FILE`, `-c FILE` and `--constraint FILE`, with or without `=`.
fn nested_requirements(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let line = line.split(" #").next().unwrap_or("").trim();
        ["--requirement", "--constraint", "-r", "-c"]
            .iter()
            .find_map(|option| line.strip_prefix(option))
            .filter(|rest| rest.starts_with([' ', '=', '\t']))
            .map(|rest| rest.trim_start_matches(['=', ' ', '\t']).trim())
            .filter(|path| !path.is_empty())
    })
}

/// Returns the local paths that the lines of a `requirements.txt` install from, such as
/// `./lib`, `-e ./lib`, `file:shared` or `pkg @ file:///opt/pkg`, each with whether it is
/// editable. Names from an index and URLs of other schemes are left out.
fn local_requirements(text: &str) -> Vec<(String, bool)> {
    let mut local = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        let (line, editable) = match line
            .strip_prefix("--editable")
            .or_else(|| line.strip_prefix("-e"))
        {
            Some(rest) => (rest.trim_start_matches('=').trim(), true),
            None => (line, false),
        };
        let line = line.rsplit_once(" @ ").map_or(line, |(_, url)| url.trim());
        let (path, file_url) = match line
            .strip_prefix("file://")
            .or_else(|| line.strip_prefix("file:"))
        {
            Some(path) => (path, true),
            None => (line, false),
        };
        // Extras such as `./lib[dev]` are not part of the path.
        let path = path.split('[').next().unwrap_or("").trim();
        if !path.is_empty() && (file_url || path.starts_with('.') || path.starts_with('/')) {
            local.push((path.to_owned(), editable));
        }
    }
    local
}

/// Adds the files and symbolic links under `path` (or `path` itself when it is a file) to
/// `files`, without following links, so that a cycle of links ends. Leaves out the folders
/// that source copies skip and those that pip writes into a local package as it installs it
/// (`build` and `*.egg-info`), so that the key at the next start matches the key at deploy.
/// A missing path adds nothing; pip reports it.
fn list_files(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // The path named in requirements.txt may itself be a link, which pip follows.
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    if metadata.is_file() {
        files.push(path.to_owned());
        return Ok(());
    }
    list_folder(path, files)
}

/// Adds the files and links of the folder `path` to `files`, as `list_files` describes.
fn list_folder(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(path).with_context(|| format!("failed to list {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", path.display()))?;
        let file_type = entry
            .file_type()
            .with_context(|| format!("failed to list {}", path.display()))?;
        let name = entry.file_name();
        let pip_output = name == "build" || name.to_string_lossy().ends_with(".egg-info");
        if file_type.is_dir() {
            if !is_skipped(&name) && !pip_output {
                list_folder(&entry.path(), files)?;
            }
        } else {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// Returns the first 16 hex digits of the SHA-256 of the runtime name, the framework
/// requirement and the contents of `files`. A missing file counts as empty.
fn dependency_key(runtime: &str, framework: &str, files: &[&Path]) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(runtime.as_bytes());
    hasher.update([0]);
    hasher.update(framework.as_bytes());
    for file in files {
        hasher.update([0]);
        match std::fs::read(file) {
            Ok(bytes) => hasher.update(&bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", file.display()))
            }
        }
    }
    let digest = hex::encode(hasher.finalize());
    Ok(digest[..16].to_owned())
}

/// Runs `build` to fill `dir` unless `dir/.ready` exists, under an exclusive lock on
/// `dir.lock`. A directory left by a failed build is removed first.
async fn build_once(
    dir: &Path,
    build: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let ready = dir.join(".ready");
    if ready.is_file() {
        return Ok(());
    }

    let lock_path = dir.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("failed to open {}", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .context("the lock task failed")?
        .map_err(|(_, errno)| anyhow::anyhow!("failed to lock {}: {errno}", lock_path.display()))?;
    // Another process may have built it while this one waited for the lock.
    if ready.is_file() {
        return Ok(());
    }

    if dir.exists() {
        tokio::fs::remove_dir_all(dir)
            .await
            .with_context(|| format!("failed to remove the partial runtime {}", dir.display()))?;
    }

    info!(runtime = %dir.display(), "installing function dependencies");
    let result = build.await;
    match &result {
        Ok(()) => {
            tokio::fs::write(&ready, b"")
                .await
                .with_context(|| format!("failed to write {}", ready.display()))?;
            info!(runtime = %dir.display(), "function dependencies installed");
        }
        Err(_) => {
            // A failed installation leaves nothing worth keeping; the next deploy starts
            // afresh either way. The lock file stays, because another process may hold it
            // open while it waits.
            if let Err(err) = tokio::fs::remove_dir_all(dir).await {
                if err.kind() != std::io::ErrorKind::NotFound {
                    warn!(runtime = %dir.display(), error = %err, "failed to remove a failed runtime");
                }
            }
        }
    }
    drop(lock);
    result
}

/// Runs an installation command and fails with the end of its output when it fails.
async fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("failed to run {what}; is it installed and on the PATH?"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    anyhow::bail!("{what} failed ({}):\n{}", output.status, tail.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_key_follows_file_contents() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("requirements.txt");
        let missing = dependency_key("python", "ff", &[&file]).expect("key");
        std::fs::write(&file, "requests==2.0\n").expect("write");
        let first = dependency_key("python", "ff", &[&file]).expect("key");
        std::fs::write(&file, "requests==2.1\n").expect("write");
        let second = dependency_key("python", "ff", &[&file]).expect("key");
        assert_ne!(missing, first);
        assert_ne!(first, second);
        assert_eq!(
            first,
            {
                std::fs::write(&file, "requests==2.0\n").expect("write");
                dependency_key("python", "ff", &[&file]).expect("key")
            },
            "the same contents give the same key"
        );
    }

    #[test]
    fn local_requirements_are_found() {
        let text = "requests==2.31\n\
                    ./lib  # the shared code\n\
                    -e ./editable\n\
                    --editable=../sibling\n\
                    file:vendor/pkg.tar.gz\n\
                    tool @ file:///opt/tool\n\
                    ./extras[dev]\n\
                    git+https://example.com/repo.git\n\
                    # ./commented\n";
        assert_eq!(
            local_requirements(text),
            [
                ("./lib".to_owned(), false),
                ("./editable".to_owned(), true),
                ("../sibling".to_owned(), true),
                ("vendor/pkg.tar.gz".to_owned(), false),
                ("/opt/tool".to_owned(), false),
                ("./extras".to_owned(), false),
            ]
        );
    }

    #[test]
    fn local_package_contents_change_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let version = dir.path();
        let requirements = version.join("requirements.txt");
        std::fs::write(&requirements, "./lib\n").expect("write");
        std::fs::create_dir_all(version.join("lib/pkg")).expect("mkdir");
        std::fs::write(version.join("lib/pkg/__init__.py"), "A = 1\n").expect("write");
        let first = local_requirements_manifest(version, &requirements).expect("manifest");
        std::fs::write(version.join("lib/pkg/__init__.py"), "A = 2\n").expect("write");
        let second = local_requirements_manifest(version, &requirements).expect("manifest");
        assert!(first.contains("lib/pkg/__init__.py"), "{first}");
        assert_ne!(first, second);
        std::fs::write(&requirements, "requests\n").expect("write");
        let remote = local_requirements_manifest(version, &requirements).expect("manifest");
        assert_eq!(remote, "");
    }

    #[test]
    fn local_package_scan_skips_links_and_builds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let version = dir.path();
        let requirements = version.join("requirements.txt");
        std::fs::write(&requirements, "./lib\n").expect("write");
        std::fs::create_dir_all(version.join("lib/mylib")).expect("mkdir");
        std::fs::write(version.join("lib/mylib/__init__.py"), "").expect("write");
        std::os::unix::fs::symlink(".", version.join("lib/loop")).expect("link");
        std::os::unix::fs::symlink("..", version.join("lib/up")).expect("link");
        let first = local_requirements_manifest(version, &requirements).expect("a cycle ends");
        assert!(first.contains("lib/loop"), "{first}");
        // What pip leaves in the package as it installs it does not change the key.
        std::fs::create_dir_all(version.join("lib/build/lib")).expect("mkdir");
        std::fs::write(version.join("lib/build/lib/x.py"), "").expect("write");
        std::fs::create_dir_all(version.join("lib/mylib.egg-info")).expect("mkdir");
        std::fs::write(version.join("lib/mylib.egg-info/PKG-INFO"), "").expect("write");
        let second = local_requirements_manifest(version, &requirements).expect("manifest");
        assert_eq!(first, second);
    }

    #[test]
    fn nested_requirement_files_change_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let version = dir.path();
        let requirements = version.join("requirements.txt");
        std::fs::write(&requirements, "-r deps/base.txt\n--constraint=pins.txt\n").expect("write");
        std::fs::create_dir_all(version.join("deps")).expect("mkdir");
        // A nested file names its own nested files relative to itself, and may loop.
        std::fs::write(version.join("deps/base.txt"), "-r more.txt\n").expect("write");
        std::fs::write(version.join("deps/more.txt"), "-r base.txt\n").expect("write");
        std::fs::write(version.join("pins.txt"), "").expect("write");
        let first = local_requirements_manifest(version, &requirements).expect("manifest");
        assert!(first.contains("deps/more.txt"), "{first}");
        assert!(first.contains("pins.txt"), "{first}");
        std::fs::write(version.join("deps/more.txt"), "-r base.txt\ntabulate\n").expect("write");
        let second = local_requirements_manifest(version, &requirements).expect("manifest");
        assert_ne!(first, second, "a change two levels down gives a new key");
    }

    #[tokio::test]
    async fn stale_node_modules_link_is_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old_cache = dir.path().join("old/node_modules");
        let new_cache = dir.path().join("new/node_modules");
        std::fs::create_dir_all(&old_cache).expect("mkdir");
        std::fs::create_dir_all(&new_cache).expect("mkdir");
        let link = dir.path().join("node_modules");
        link_node_modules(&old_cache, &link).await.expect("link");
        link_node_modules(&new_cache, &link).await.expect("relink");
        assert_eq!(std::fs::read_link(&link).expect("a link"), new_cache);
        link_node_modules(&new_cache, &link)
            .await
            .expect("unchanged");
        assert_eq!(std::fs::read_link(&link).expect("a link"), new_cache);
    }

    #[tokio::test]
    async fn failed_build_leaves_no_folder() {
        let cache = tempfile::tempdir().expect("temp dir");
        let dir = cache.path().join("python-0123");
        let result = build_once(&dir, async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(dir.join("partial"), b"half installed").await?;
            anyhow::bail!("pip install failed")
        })
        .await;
        assert!(result.is_err());
        assert!(!dir.exists(), "the failed runtime is removed");
        let built = build_once(&dir, async {
            tokio::fs::create_dir_all(&dir).await?;
            Ok(())
        })
        .await;
        assert!(built.is_ok());
        assert!(dir.join(".ready").is_file());
    }

    #[test]
    fn copy_source_skips_installed_dependencies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("src");
        std::fs::create_dir_all(source.join("node_modules/x")).expect("mkdir");
        std::fs::create_dir_all(source.join("lib")).expect("mkdir");
        std::fs::write(source.join("index.js"), "1").expect("write");
        std::fs::write(source.join("lib/util.js"), "2").expect("write");
        std::fs::write(source.join("node_modules/x/y.js"), "3").expect("write");
        let dest = dir.path().join("dest");
        copy_source(&source, &dest, &[]).expect("copy");
        assert!(dest.join("index.js").is_file());
        assert!(dest.join("lib/util.js").is_file());
        assert!(!dest.join("node_modules").exists());
    }

    #[test]
    fn copy_source_leaves_out_the_data_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().canonicalize().expect("canonical").join("app");
        std::fs::create_dir_all(source.join("sluice-data/functions/sources")).expect("mkdir");
        std::fs::write(source.join("main.py"), "def f(d, c): pass\n").expect("write");
        std::fs::write(source.join("sluice-data/db"), "store").expect("write");
        // The copy goes under the data directory inside the source, as it does when a user
        // deploys `--source .` next to the default `./sluice-data`.
        let functions = source.join("sluice-data/functions");
        let dest = functions.join("sources/f/v1");
        let protected = [functions];
        check_source(Language::Python, &source, &protected).expect("valid source");
        copy_source(&source, &dest, &protected).expect("copy");
        assert!(dest.join("main.py").is_file());
        assert!(
            !dest.join("sluice-data").exists(),
            "the data directory is left out"
        );
    }

    #[test]
    fn data_directory_as_source_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().canonicalize().expect("canonical").join("data");
        std::fs::create_dir_all(data.join("functions")).expect("mkdir");
        std::fs::write(data.join("main.py"), "def f(d, c): pass\n").expect("write");
        let err = check_source(Language::Python, &data, &[data.join("functions")])
            .expect_err("the data directory");
        assert!(
            err.to_string().contains("is the server's data directory"),
            "{err}"
        );
    }

    #[test]
    fn copy_source_inside_the_functions_folder_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let functions = dir
            .path()
            .canonicalize()
            .expect("canonical")
            .join("functions");
        std::fs::create_dir_all(functions.join("records")).expect("mkdir");
        std::fs::write(functions.join("main.py"), "def f(d, c): pass\n").expect("write");
        let dest = functions.join("sources/f/v1");
        copy_source(&functions, &dest, &[]).expect("copy");
        assert!(dest.join("main.py").is_file());
        assert!(
            !dest.join("sources").exists(),
            "the copy is not copied into itself"
        );
    }

    /// A source folder with main.py and lib/util.py, and a folder outside it.
    fn source_with_outside() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("src");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(source.join("lib")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(source.join("main.py"), "main").expect("write");
        std::fs::write(source.join("lib/util.py"), "util").expect("write");
        std::fs::write(outside.join("passwd"), "secret").expect("write");
        (dir, source, outside)
    }

    #[test]
    fn links_inside_source_are_copied() {
        let (dir, source, _) = source_with_outside();
        std::os::unix::fs::symlink("main.py", source.join("alias.py")).expect("link");
        std::os::unix::fs::symlink(source.join("lib"), source.join("lib/self")).expect("link");
        std::os::unix::fs::symlink("lib", source.join("modules")).expect("link");
        check_source(Language::Python, &source, &[]).expect("every link stays inside");
        let dest = dir.path().join("dest");
        copy_source(&source, &dest, &[]).expect("copy");

        let alias = std::fs::symlink_metadata(dest.join("alias.py")).expect("alias.py");
        assert!(alias.is_file(), "a file link is copied as the file");
        assert_eq!(
            std::fs::read_to_string(dest.join("alias.py")).expect("read"),
            "main"
        );
        let modules = std::fs::read_link(dest.join("modules")).expect("a folder link");
        assert_eq!(modules, PathBuf::from("lib"));
        let self_link = std::fs::read_link(dest.join("lib/self")).expect("a folder link");
        assert_eq!(self_link, PathBuf::from("."), "a link to its own folder");
        assert_eq!(
            std::fs::read_to_string(dest.join("modules/util.py")).expect("read"),
            "util",
            "the link leads into the copy"
        );
    }

    #[test]
    fn links_outside_source_are_rejected() {
        let (dir, source, outside) = source_with_outside();
        std::os::unix::fs::symlink(&outside, source.join("etcdir")).expect("link");
        std::os::unix::fs::symlink(outside.join("passwd"), source.join("lib/passwd.txt"))
            .expect("link");
        let err = check_source(Language::Python, &source, &[]).expect_err("links lead out");
        let message = format!("{err:#}");
        let outside = std::fs::canonicalize(&outside).expect("canonical");
        for (link, target) in [
            ("etcdir", outside.clone()),
            ("lib/passwd.txt", outside.join("passwd")),
        ] {
            assert!(
                message.contains(&format!(
                    "the symbolic link {link} points to {}, outside the source folder",
                    target.display()
                )),
                "{message}"
            );
        }
        assert!(message.contains("remove the link"), "{message}");

        let dest = dir.path().join("dest");
        let err = copy_source(&source, &dest, &[]).expect_err("the copy rejects them too");
        assert!(
            format!("{err:#}").contains("outside the source folder"),
            "{err:#}"
        );
        assert!(
            !dest.join("lib/passwd.txt").exists(),
            "nothing outside is copied"
        );
    }

    #[test]
    fn dangling_links_are_skipped() {
        let (dir, source, _) = source_with_outside();
        std::os::unix::fs::symlink("/nonexistent/x", source.join(".#lockfile")).expect("link");
        std::os::unix::fs::symlink("loop-b", source.join("loop-a")).expect("link");
        std::os::unix::fs::symlink("loop-a", source.join("loop-b")).expect("link");
        check_source(Language::Python, &source, &[]).expect("dangling links are no error");
        let dest = dir.path().join("dest");
        copy_source(&source, &dest, &[]).expect("copy");
        assert!(dest.join("main.py").is_file());
        for skipped in [".#lockfile", "loop-a", "loop-b"] {
            assert!(
                std::fs::symlink_metadata(dest.join(skipped)).is_err(),
                "{skipped} is left out"
            );
        }
    }
}
