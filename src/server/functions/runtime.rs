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
use tracing::info;

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

/// Copies the source folder to `dest`, leaving out [`SKIPPED_FOLDERS`]. Symbolic links are
/// followed.
///
/// # Errors
///
/// Fails when a file cannot be read or written, naming it.
pub(crate) fn copy_source(source: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest)
        .with_context(|| format!("failed to create {}", dest.display()))?;
    let entries = std::fs::read_dir(source)
        .with_context(|| format!("failed to read {}", source.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read {}", source.display()))?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        let metadata = std::fs::metadata(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if metadata.is_dir() {
            let skipped = SKIPPED_FOLDERS
                .iter()
                .any(|name| entry.file_name() == std::ffi::OsStr::new(name));
            if !skipped {
                copy_source(&path, &target)?;
            }
        } else {
            std::fs::copy(&path, &target).with_context(|| {
                format!("failed to copy {} to {}", path.display(), target.display())
            })?;
        }
    }
    Ok(())
}

/// Checks that the source has the file functions-framework loads.
///
/// # Errors
///
/// Names the missing file.
pub(crate) fn check_source(language: Language, source: &Path) -> anyhow::Result<()> {
    let needed = match language {
        Language::Python => "main.py",
        Language::Nodejs => {
            if source.join("package.json").is_file() {
                return Ok(());
            }
            "index.js"
        }
    };
    if source.join(needed).is_file() {
        Ok(())
    } else {
        anyhow::bail!(
            "--source {} has no {needed}: functions-framework loads the function from it",
            source.display()
        )
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
    let key = dependency_key("python", PYTHON_FRAMEWORK, &[&requirements])?;
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
    let link = version_dir.join("node_modules");
    if tokio::fs::symlink_metadata(&link).await.is_err() {
        tokio::fs::symlink(&node_modules, &link)
            .await
            .with_context(|| format!("failed to link {}", link.display()))?;
    }
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
    if result.is_ok() {
        tokio::fs::write(&ready, b"")
            .await
            .with_context(|| format!("failed to write {}", ready.display()))?;
        info!(runtime = %dir.display(), "function dependencies installed");
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
    fn copy_source_skips_installed_dependencies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("src");
        std::fs::create_dir_all(source.join("node_modules/x")).expect("mkdir");
        std::fs::create_dir_all(source.join("lib")).expect("mkdir");
        std::fs::write(source.join("index.js"), "1").expect("write");
        std::fs::write(source.join("lib/util.js"), "2").expect("write");
        std::fs::write(source.join("node_modules/x/y.js"), "3").expect("write");
        let dest = dir.path().join("dest");
        copy_source(&source, &dest).expect("copy");
        assert!(dest.join("index.js").is_file());
        assert!(dest.join("lib/util.js").is_file());
        assert!(!dest.join("node_modules").exists());
    }
}
