//! Embeds the git commit in `--version`: `GIT_COMMIT` if set (container builds), else `git rev-parse`, else
//! `unknown` (a source tarball).

use std::process::Command;

fn main() {
    // A container build has no .git: the Dockerfile passes the commit in GIT_COMMIT.
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    if let Ok(commit) = std::env::var("GIT_COMMIT") {
        if !commit.trim().is_empty() {
            println!("cargo:rustc-env=ZDS_GIT_COMMIT={}", commit.trim());
            return;
        }
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ZDS_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
