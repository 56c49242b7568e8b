//! `sluice auth hash-token`: the value of an identity's `token_sha256` key.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Args;
use sha2::{Digest as _, Sha256};

/// Shortest token accepted. A SHA-256 hash protects a token only when the token itself
/// cannot be guessed, so it should be random: 32 characters of base64 carry 192 bits.
const MIN_TOKEN_CHARS: usize = 32;

/// Print the SHA-256 hash of a bearer token read from stdin, for `token_sha256` in
/// `[[auth.identities]]`. Leading and trailing whitespace is removed, as the server removes it
/// from the header. The token is never printed.
#[derive(Debug, Args)]
pub(crate) struct HashTokenArgs {}

/// Reads the token from stdin and prints its hash; exits 1 when the token is empty, too short
/// or not readable.
pub(crate) fn run(_args: &HashTokenArgs) -> ExitCode {
    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        super::write_stderr(format_args!(
            "error: failed to read the token from stdin: {err}"
        ));
        return ExitCode::FAILURE;
    }
    // The server trims the token of the Authorization header, so the hash is of the trimmed
    // token too. Otherwise a token with a trailing space would never match.
    let token = input.trim();
    if token.chars().count() < MIN_TOKEN_CHARS {
        super::write_stderr(format_args!(
            "error: the token on stdin has {} characters; use a random token of at least \
             {MIN_TOKEN_CHARS}, for example from `openssl rand -base64 32`",
            token.chars().count()
        ));
        return ExitCode::FAILURE;
    }
    super::write_stdout(format_args!("{}", token_sha256_hex(token)));
    ExitCode::SUCCESS
}

/// Returns the lower-case hex SHA-256 of a token, as `token_sha256` stores it.
pub(crate) fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
