//! The deployment manifests against the binary's configuration contract: every environment variable that a
//! file under `deploy/` sets for the job is one the binary reads (`config::ENV_VARS`), and the Zoho secrets
//! reach the job only from a secret store (Secret Manager, a Kubernetes Secret, the root-only env file),
//! never as a value written in a manifest.
//!
//! Not here: whether the files are valid Terraform, YAML or unit files (`scripts/lint-deploy.sh` runs real
//! linters for that). Parsing is by hand and shallow on purpose: each format has a small extractor that finds
//! where a variable is *set*, and a catch-all scan finds every token in the job's own namespaces (`ZOHO_`,
//! `BQ_`, ...) anywhere under `deploy/`, comments and READMEs included, so that a misspelt name cannot hide in
//! prose either. The extractors are tested on small inline samples at the bottom, so that a broken parser
//! fails loudly instead of finding nothing. One more test builds and runs the image where Docker works.

use std::fs;
use std::path::{Path, PathBuf};

use zoho_deals_sync::config::ENV_VARS;

/// The two values that must only ever come from a secret store.
const SECRETS: [&str; 2] = ["ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN"];

/// Prefixes only the job's own variables use: any upper-case token starting with one must be in `ENV_VARS`.
const JOB_PREFIXES: [&str; 5] = ["ZOHO_", "BQ_", "SYNC_", "SQLITE_", "BIGQUERY_"];

/// Variables that cron itself reads in a crontab; they are not the job's.
const CRON_OWN: [&str; 6] = ["SHELL", "PATH", "MAILTO", "HOME", "LOGNAME", "CRON_TZ"];

/// Where a manifest takes a variable's value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Written in the manifest itself.
    Literal,
    /// Read from a secret store when the job starts (Secret Manager reference, Kubernetes `secretKeyRef`).
    SecretStore,
    /// The secret store's own template (a Kubernetes Secret, the systemd env file): values are placeholders.
    StoreTemplate,
}

/// One variable set for the job by one manifest.
#[derive(Debug)]
struct Setting {
    file: String,
    line: usize,
    name: String,
    source: Source,
    /// The literal value, when the format has one on the same line.
    value: Option<String>,
}

impl Setting {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The kinds of file under `deploy/`, each with its own extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dockerfile,
    Terraform,
    Yaml,
    SystemdUnit,
    EnvFile,
    Crontab,
    Markdown,
    /// Known files that set nothing (ignore lists); still covered by the catch-all scan.
    NoSettings,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Some(match (name, ext) {
        ("Dockerfile", _) => Kind::Dockerfile,
        ("env.example", _) => Kind::EnvFile,
        ("crontab", _) => Kind::Crontab,
        (".gitignore" | ".dockerignore", _) => Kind::NoSettings,
        (_, "tf") => Kind::Terraform,
        (_, "yaml" | "yml") => Kind::Yaml,
        (_, "service" | "timer" | "conf") => Kind::SystemdUnit,
        (_, "md") => Kind::Markdown,
        (_, "dockerignore" | "gitignore") => Kind::NoSettings,
        _ => return None,
    })
}

/// Local Terraform state and inputs a deployer may leave in deploy/gcp: not manifests of this repository.
fn is_local_state(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tfvars") || name.contains(".tfstate") || name == ".terraform.lock.hcl"
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under deploy/ (hidden directories such as `.terraform/` skipped), as (path relative to the
/// repository root, contents).
fn manifests() -> Vec<(String, PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> =
            fs::read_dir(dir).expect("read deploy/").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        for path in entries {
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if path.is_dir() {
                if !hidden {
                    walk(&path, out);
                }
            } else if !is_local_state(&path) {
                out.push(path);
            }
        }
    }
    let root = deploy_dir();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    assert!(!paths.is_empty(), "no files under {}", root.display());
    paths
        .into_iter()
        .map(|p| {
            let rel = format!("deploy/{}", p.strip_prefix(&root).expect("under deploy/").display());
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, p, text)
        })
        .collect()
}

fn settings_in(rel: &str, kind: Kind, text: &str) -> Vec<Setting> {
    match kind {
        Kind::Dockerfile => dockerfile_settings(rel, text),
        Kind::Terraform => terraform_settings(rel, text),
        Kind::Yaml => yaml_settings(rel, text),
        Kind::SystemdUnit => systemd_settings(rel, text),
        Kind::EnvFile => env_file_settings(rel, text),
        Kind::Crontab => crontab_settings(rel, text),
        Kind::Markdown => markdown_settings(rel, text),
        Kind::NoSettings => Vec::new(),
    }
}

fn all_settings() -> Vec<Setting> {
    manifests()
        .iter()
        .flat_map(|(rel, path, text)| {
            let kind = kind_of(path).unwrap_or_else(|| panic!("{rel}: no extractor for this kind of file"));
            settings_in(rel, kind, text)
        })
        .collect()
}

// --- Small parsing helpers ---------------------------------------------------------------------------------

/// An environment variable name as the job spells them: upper-case ASCII, digits and `_`, starting with a letter.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// `NAME=value` → (NAME, value) when NAME is an env name.
fn assignment(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.split_once('=')?;
    is_env_name(name).then_some((name, value))
}

/// Splits shell-like words, keeping quoted parts together (quotes are kept; `unquote` removes them).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Joins lines ending in `\` with the next, keeping the number of the first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let trimmed = line.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            pending = Some((n, acc));
        } else {
            acc.push_str(trimmed);
            out.push((n, acc));
        }
    }
    out.extend(pending);
    out
}

fn is_placeholder(value: &str) -> bool {
    let v = unquote(value);
    v.is_empty() || v.starts_with("REPLACE_ME") || v.starts_with('$') || v.starts_with('<') || v.contains("XXXX")
}

// --- Extractors, one per format -----------------------------------------------------------------------------

/// `ENV NAME=value ...` (and the legacy `ENV NAME value`) of the final stage, the one the job runs in; the
/// build stages' `ENV`s and every `ARG` are build-time only.
fn dockerfile_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    for (line, l) in logical_lines(text) {
        let l = l.trim();
        let Some((instr, rest)) = l.split_once(char::is_whitespace) else { continue };
        if instr.eq_ignore_ascii_case("FROM") {
            out.clear();
        }
        if !instr.eq_ignore_ascii_case("ENV") {
            continue;
        }
        let ws = words(rest);
        let pairs: Vec<(String, String)> = if ws.first().is_some_and(|w| w.contains('=')) {
            ws.iter().filter_map(|w| assignment(w).map(|(n, v)| (n.to_owned(), v.to_owned()))).collect()
        } else {
            ws.split_first().map(|(n, v)| vec![(n.clone(), v.join(" "))]).unwrap_or_default()
        };
        for (name, value) in pairs {
            out.push(Setting { file: rel.into(), line, name, source: Source::Literal, value: Some(value) });
        }
    }
    out
}

/// Terraform with comments removed (`#`, `//`, `/* */`), strings left intact; line breaks kept.
fn strip_hcl_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut line_comment, mut block_comment) = (false, false, false);
    while let Some(c) = chars.next() {
        if line_comment {
            if c == '\n' {
                line_comment = false;
                out.push(c);
            }
        } else if block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_comment = false;
            } else if c == '\n' {
                out.push(c);
            }
        } else if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '#' || (c == '/' && chars.peek() == Some(&'/')) {
            line_comment = true;
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            block_comment = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// `name = "UPPER_CASE"` inside an `env` block (Cloud Run) or a `dynamic "env"` content block: resource and
/// variable names are lower-case in this repository, so an upper-case `name` is an environment variable. The
/// enclosing block says whether the value is a `secret_key_ref`.
fn terraform_settings(rel: &str, text: &str) -> Vec<Setting> {
    let code = strip_hcl_comments(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim().strip_prefix("name") else { continue };
        let Some(rest) = rest.trim_start().strip_prefix('=') else { continue };
        let name = unquote(rest);
        if !rest.trim().starts_with('"') || !is_env_name(name) {
            continue;
        }
        let block = enclosing_block(&lines, i);
        let has_value =
            block.iter().any(|b| b.trim().strip_prefix("value").is_some_and(|r| r.trim_start().starts_with('=')));
        let by_ref = block.iter().any(|b| b.contains("secret_key_ref"));
        let source = if by_ref && !has_value { Source::SecretStore } else { Source::Literal };
        out.push(Setting { file: rel.into(), line: i + 1, name: name.into(), source, value: None });
    }
    out
}

/// The lines of the innermost `{ ... }` block that contains line `at`.
fn enclosing_block<'a>(lines: &[&'a str], at: usize) -> Vec<&'a str> {
    let count = |l: &str, ch: char| l.chars().filter(|&c| c == ch).count() as i64;
    let mut depth = 0;
    let mut start = 0;
    for i in (0..at).rev() {
        depth += count(lines[i], '}') - count(lines[i], '{');
        if depth < 0 {
            start = i;
            break;
        }
    }
    let mut depth = 0;
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate().skip(start) {
        depth += count(l, '{') - count(l, '}');
        if depth <= 0 && i > start {
            end = i + 1;
            break;
        }
    }
    lines[start..end].to_vec()
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// Kubernetes YAML: container `env` items (`- name: X` then `value:` or `valueFrom: secretKeyRef:`), and the
/// keys of a `kind: Secret` (its `stringData`/`data`), which are the store's own template.
fn yaml_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut doc_start = 0;
    for end in (0..=lines.len()).filter(|&i| i == lines.len() || lines[i].trim_end() == "---") {
        let doc = &lines[doc_start..end];
        let offset = doc_start;
        doc_start = end + 1;
        let is_secret = doc.iter().any(|l| l.trim_end() == "kind: Secret");
        for (j, l) in doc.iter().enumerate() {
            let t = l.trim();
            if t.starts_with('#') {
                continue;
            }
            let line = offset + j + 1;
            if is_secret && (t == "stringData:" || t == "data:") {
                let base = indent(l);
                let keys = doc[j + 1..].iter().take_while(|m| m.trim().is_empty() || indent(m) > base);
                for (k, m) in keys.enumerate() {
                    if let Some((name, v)) = m.trim().split_once(':').filter(|(n, _)| is_env_name(n)) {
                        let (name, value) = (name.to_owned(), Some(v.trim().to_owned()));
                        let line = line + k + 1;
                        out.push(Setting { file: rel.into(), line, name, source: Source::StoreTemplate, value });
                    }
                }
                continue;
            }
            let Some(name) = t.strip_prefix("- name:").map(unquote) else { continue };
            if !is_env_name(name) {
                continue;
            }
            let item = indent(l);
            let body: Vec<&str> =
                doc[j + 1..].iter().copied().take_while(|m| m.trim().is_empty() || indent(m) > item).collect();
            let by_ref = body.iter().any(|m| m.trim() == "secretKeyRef:");
            let value = body.iter().find_map(|m| m.trim().strip_prefix("value:").map(|v| unquote(v).to_owned()));
            let source = if by_ref && value.is_none() { Source::SecretStore } else { Source::Literal };
            out.push(Setting { file: rel.into(), line, name: name.into(), source, value });
        }
    }
    out
}

/// `Environment=NAME=value "NAME2=value with spaces"` and `PassEnvironment=NAME ...`.
fn systemd_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    for (line, l) in logical_lines(text) {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Environment=") {
            for w in words(rest) {
                if let Some((name, value)) = assignment(unquote(&w)) {
                    let (name, value) = (name.to_owned(), Some(value.to_owned()));
                    out.push(Setting { file: rel.into(), line, name, source: Source::Literal, value });
                }
            }
        } else if let Some(rest) = l.strip_prefix("PassEnvironment=") {
            for name in rest.split_whitespace().filter(|n| is_env_name(n)) {
                out.push(Setting { file: rel.into(), line, name: name.into(), source: Source::Literal, value: None });
            }
        }
    }
    out
}

/// The env file template: `NAME=value` lines, including commented-out ones (`#NAME=value`), which a
/// deployer uncomments.
fn env_file_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim().trim_start_matches('#');
        let t = t.strip_prefix("export ").unwrap_or(t);
        if let Some((name, value)) = assignment(t) {
            let (name, value) = (name.to_owned(), Some(value.to_owned()));
            out.push(Setting { file: rel.into(), line: i + 1, name, source: Source::StoreTemplate, value });
        }
    }
    out
}

/// A crontab's `NAME=value` lines (but cron's own variables) and `NAME=value` words in a job's command.
fn crontab_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let candidates: Vec<String> = if assignment(t).is_some() { vec![t.to_owned()] } else { words(t) };
        for w in candidates {
            if let Some((name, value)) = assignment(unquote(&w)) {
                if !CRON_OWN.contains(&name) {
                    let (name, value) = (name.to_owned(), Some(value.to_owned()));
                    out.push(Setting { file: rel.into(), line: i + 1, name, source: Source::Literal, value });
                }
            }
        }
    }
    out
}

/// Commands in fenced code blocks: gcloud's `--set-env-vars`/`--update-env-vars` (literal) and
/// `--set-secrets`/`--update-secrets` (Secret Manager), docker's `-e`/`--env`, and kubectl's
/// `--from-literal`/`--from-file` (creating the store itself).
fn markdown_settings(rel: &str, text: &str) -> Vec<Setting> {
    let mut code = String::new();
    let mut in_fence = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_fence = !in_fence;
            code.push('\n');
        } else {
            code.push_str(if in_fence { l } else { "" });
            code.push('\n');
        }
    }
    let mut out = Vec::new();
    for (line, l) in logical_lines(&code) {
        let ws = words(&l);
        for (k, w) in ws.iter().enumerate() {
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
                _ => (w.as_str(), None),
            };
            let source = match flag {
                "--set-env-vars" | "--update-env-vars" | "-e" | "--env" => Source::Literal,
                "--set-secrets" | "--update-secrets" => Source::SecretStore,
                "--from-literal" | "--from-file" => Source::StoreTemplate,
                _ => continue,
            };
            let Some(arg) = inline.or_else(|| ws.get(k + 1).cloned()) else { continue };
            for item in unquote(&arg).split(',') {
                if let Some((name, value)) = assignment(item) {
                    // A file reference is not a value.
                    let value = (flag != "--from-file").then(|| value.to_owned());
                    out.push(Setting { file: rel.into(), line, name: name.into(), source, value });
                }
            }
        }
    }
    out
}

/// Upper-case tokens in the job's own namespaces, anywhere in the text.
fn namespaced_tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        for token in l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if is_env_name(token) && JOB_PREFIXES.iter().any(|p| token.starts_with(p)) {
                out.push((i + 1, token.to_owned()));
            }
        }
    }
    out
}

// --- The tests --------------------------------------------------------------------------------------------

#[test]
fn every_file_under_deploy_is_a_manifest_these_checks_understand() {
    let unknown: Vec<String> =
        manifests().into_iter().filter(|(_, p, _)| kind_of(p).is_none()).map(|(rel, _, _)| rel).collect();
    assert!(
        unknown.is_empty(),
        "no extractor for {unknown:?}: teach tests/integration/manifests.rs this format, or the env-name check \
         silently skips it"
    );
}

#[test]
fn every_variable_a_manifest_sets_is_one_the_binary_reads() {
    let settings = all_settings();
    let unknown: Vec<String> = settings
        .iter()
        .filter(|s| !ENV_VARS.contains(&s.name.as_str()))
        .map(|s| format!("{} sets {}", s.at(), s.name))
        .collect();
    assert!(unknown.is_empty(), "variables the binary does not read (config::ENV_VARS):\n{}", unknown.join("\n"));

    // The files that configure the job must actually be seen to do so: a parser that finds nothing passes
    // the check above vacuously.
    for file in [
        "deploy/Dockerfile",
        "deploy/gcp/main.tf",
        "deploy/gcp/README.md",
        "deploy/kubernetes/cronjob.yaml",
        "deploy/kubernetes/secret.example.yaml",
        "deploy/systemd/zoho-deals-sync.service",
        "deploy/systemd/zoho-deals-sync.service.d/gcp-key.conf",
        "deploy/systemd/env.example",
    ] {
        assert!(settings.iter().any(|s| s.file == file), "{file}: no environment variable found in it");
    }
}

#[test]
fn every_token_in_the_jobs_namespaces_names_a_variable_the_binary_reads() {
    let mut unknown = Vec::new();
    for (rel, _, text) in manifests() {
        for (line, token) in namespaced_tokens(&text) {
            if !ENV_VARS.contains(&token.as_str()) {
                unknown.push(format!("{rel}:{line}: {token}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "names that look like the job's variables but are not in ENV_VARS:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn zoho_secrets_never_appear_as_literal_values() {
    let mut leaks = Vec::new();
    for s in all_settings().iter().filter(|s| SECRETS.contains(&s.name.as_str())) {
        match s.source {
            Source::Literal => leaks.push(format!("{}: {} is set as a literal value", s.at(), s.name)),
            Source::StoreTemplate if s.value.as_deref().is_some_and(|v| !is_placeholder(v)) => {
                leaks.push(format!("{}: {} holds a value, not a placeholder", s.at(), s.name))
            }
            Source::SecretStore | Source::StoreTemplate => {}
        }
    }
    assert!(leaks.is_empty(), "Zoho secrets must come from a secret store:\n{}", leaks.join("\n"));
}

#[test]
fn every_deployment_target_takes_both_zoho_secrets_from_its_store() {
    let settings = all_settings();
    let wired = |file: &str, source: Source| {
        SECRETS.iter().all(|name| settings.iter().any(|s| s.file == file && s.name == *name && s.source == source))
    };
    for (file, source) in [
        ("deploy/gcp/main.tf", Source::SecretStore),
        ("deploy/gcp/README.md", Source::SecretStore),
        ("deploy/kubernetes/cronjob.yaml", Source::SecretStore),
        ("deploy/kubernetes/secret.example.yaml", Source::StoreTemplate),
        ("deploy/systemd/env.example", Source::StoreTemplate),
    ] {
        assert!(wired(file, source), "{file}: does not take both {SECRETS:?} from the store ({source:?})");
    }
    // The image must not carry them in any form, not even empty.
    let in_image: Vec<_> =
        settings.iter().filter(|s| s.file == "deploy/Dockerfile" && SECRETS.contains(&s.name.as_str())).collect();
    assert!(in_image.is_empty(), "the image sets Zoho secrets: {in_image:?}");
}

/// Builds the image and runs it, where a Docker engine answers; these machines have none, so there the test
/// says so and passes. The build compiles the job in release mode: expect several minutes.
#[test]
fn the_image_builds_and_runs_as_a_non_root_user_where_docker_works() {
    use std::process::Command;

    let docker = |args: &[&str]| Command::new("docker").args(args).env("DOCKER_BUILDKIT", "1").output();
    match docker(&["info", "--format", "{{.ServerVersion}}"]) {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("SKIPPED the_image_builds_and_runs_as_a_non_root_user_where_docker_works: no Docker engine here");
            return;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tag = "zoho-deals-sync:manifests-test";
    let build = docker(&["build", "-f", &format!("{root}/deploy/Dockerfile"), "-t", tag, root]).expect("docker build");
    assert!(build.status.success(), "docker build failed:\n{}", String::from_utf8_lossy(&build.stderr));

    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", tag]).expect("docker image inspect");
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    assert!(!user.is_empty() && !user.starts_with("0") && !user.starts_with("root"), "image runs as {user:?}");

    // No environment: --version must still answer, with the read-only root filesystem the manifests ask for.
    let run = docker(&["run", "--rm", "--read-only", tag, "--version"]).expect("docker run");
    assert!(run.status.success(), "the image does not run:\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("zoho-deals-sync "));
}

// --- The extractors catch what they are for ----------------------------------------------------------------

#[test]
fn a_literal_secret_is_caught_in_every_format() {
    let literal =
        |settings: Vec<Setting>| settings.iter().any(|s| s.name == "ZOHO_REFRESH_TOKEN" && s.source == Source::Literal);
    assert!(literal(dockerfile_settings("d", "FROM x\nENV LOG_FORMAT=json \\\n    ZOHO_REFRESH_TOKEN=abc\n")));
    // Only the final stage is the job's environment.
    let stages = dockerfile_settings("d", "FROM a AS build\nENV CARGO_X=1\nFROM b\nENV ZOHO_REFRESH_TOKEN abc\n");
    assert_eq!(stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["ZOHO_REFRESH_TOKEN"]);
    assert!(literal(terraform_settings(
        "t",
        "env {\n  name  = \"ZOHO_REFRESH_TOKEN\" # secret_key_ref is only in this comment\n  value = \"abc\"\n}\n",
    )));
    assert!(literal(yaml_settings("y", "env:\n  - name: ZOHO_REFRESH_TOKEN\n    value: abc\n")));
    assert!(literal(systemd_settings("s", "[Service]\nEnvironment=\"ZOHO_REFRESH_TOKEN=abc def\"\n")));
    assert!(literal(crontab_settings("c", "ZOHO_REFRESH_TOKEN=abc\n")));
    assert!(literal(crontab_settings("c", "0 1 * * * u ZOHO_REFRESH_TOKEN=abc zoho-deals-sync\n")));
    assert!(literal(markdown_settings(
        "m",
        "```sh\ngcloud run jobs create j \\\n  --set-env-vars=\"A_B=1,ZOHO_REFRESH_TOKEN=abc\"\n```\n",
    )));
    assert!(literal(markdown_settings("m", "```sh\ndocker run -e ZOHO_REFRESH_TOKEN=abc img\n```\n")));
}

#[test]
fn a_secret_store_reference_is_recognised_in_every_format() {
    let by_ref = |settings: Vec<Setting>| {
        settings.iter().any(|s| s.name == "ZOHO_REFRESH_TOKEN" && s.source == Source::SecretStore)
    };
    assert!(by_ref(terraform_settings(
        "t",
        "env {\n  name = \"ZOHO_REFRESH_TOKEN\"\n  value_source {\n    secret_key_ref {\n      secret = \"s\"\n    }\n  }\n}\n",
    )));
    assert!(by_ref(yaml_settings(
        "y",
        "env:\n  - name: ZOHO_REFRESH_TOKEN\n    valueFrom:\n      secretKeyRef:\n        name: s\n        key: k\n",
    )));
    assert!(by_ref(markdown_settings(
        "m",
        "```\ngcloud run jobs update j --set-secrets ZOHO_REFRESH_TOKEN=t:latest\n```\n"
    )));
    // Outside a code block, a README's prose sets nothing.
    assert!(markdown_settings("m", "--set-env-vars=ZOHO_REFRESH_TOKEN=abc\n").is_empty());
}

#[test]
fn a_store_template_with_a_real_value_is_caught() {
    let secret = "---\napiVersion: v1\nkind: Secret\nstringData:\n  ZOHO_REFRESH_TOKEN: \"1000.abcdef\"\n";
    let found = yaml_settings("y", secret);
    assert!(found
        .iter()
        .any(|s| s.source == Source::StoreTemplate && s.value.as_deref().is_some_and(|v| !is_placeholder(v))));
    let env = env_file_settings("e", "# comment NAME=x\nZOHO_REFRESH_TOKEN=REPLACE_ME\n#SYNC_LOOKBACK=24h\n");
    let names: Vec<&str> = env.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ZOHO_REFRESH_TOKEN", "SYNC_LOOKBACK"]);
    assert!(env
        .iter()
        .all(|s| s.value.as_deref().is_some_and(|v| s.name != "ZOHO_REFRESH_TOKEN" || is_placeholder(v))));
}

#[test]
fn a_misspelt_variable_is_caught_even_in_prose() {
    let tokens = namespaced_tokens("Set ZOHO_REFRESH_TOKN in the env file; BQ_DATASET stays.\n");
    let unknown: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).filter(|t| !ENV_VARS.contains(t)).collect();
    assert_eq!(unknown, ["ZOHO_REFRESH_TOKN"]);
}
