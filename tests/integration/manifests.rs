//! The deployment policy, in one place: what every file under `deploy/` must and must not do.
//!
//! - **The configuration contract.** Every environment variable a manifest sets for the job is one the binary
//!   reads (`config::ENV_VARS`); a catch-all scan finds every token in the job's own namespaces (`ZOHO_`,
//!   `BQ_`, ...) anywhere under `deploy/`, comments and READMEs included, so that a misspelt name cannot hide in
//!   prose either.
//! - **Secrets.** The Zoho secrets reach the job only from a secret store (Secret Manager, a Kubernetes Secret,
//!   the root-only env file), never as a value written in a manifest or baked into the image.
//! - **The Google Cloud recipe's shape** (`deploy/gcp/*.tf`): least-privilege identities, secrets as empty
//!   containers, a Cloud Run Job with a timeout and retries, a scheduler that may only start it.
//! - **The crontab**: valid schedules, an unprivileged user, no overlapping runs.
//!
//! Terraform and YAML are read with real parsers (`hcl-rs`, `yaml-rust2`), so comments and quoting cannot
//! fool a check; the line formats (Dockerfile, systemd units, env files, crontab, shell commands in
//! READMEs) have small extractors here. Each extractor and each policy check is also run on small inline
//! samples at the bottom, so that a check that could no longer fail is noticed.
//!
//! Not here: whether the files are well-formed for their tools (`scripts/lint-deploy.sh` runs the real
//! linters: hadolint, yamllint, kubernetes-validate, `terraform fmt`, checkov, systemd-analyze, shellcheck;
//! it also runs these tests). To add a check, add a test below (a `*_problems` function returning every
//! finding keeps the message useful); to add a kind of file, teach `kind_of` and `settings_in`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use hcl::{Body, Expression, ObjectKey};
use yaml_rust2::{Yaml, YamlLoader};
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
    /// Where in the file: a line number, or the path to the setting in a parsed document.
    place: String,
    name: String,
    source: Source,
    /// The literal value, when the format has one at the same place.
    value: Option<String>,
}

impl Setting {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.place)
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
        Kind::Terraform => terraform_settings(rel, &parse_hcl(rel, text)),
        Kind::Yaml => yaml_settings(rel, &parse_yaml(rel, text)),
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

// --- Extractors for the line formats ------------------------------------------------------------------------

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
            out.push(Setting {
                file: rel.into(),
                place: line.to_string(),
                name,
                source: Source::Literal,
                value: Some(value),
            });
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
                    out.push(Setting {
                        file: rel.into(),
                        place: line.to_string(),
                        name,
                        source: Source::Literal,
                        value,
                    });
                }
            }
        } else if let Some(rest) = l.strip_prefix("PassEnvironment=") {
            for name in rest.split_whitespace().filter(|n| is_env_name(n)) {
                out.push(Setting {
                    file: rel.into(),
                    place: line.to_string(),
                    name: name.into(),
                    source: Source::Literal,
                    value: None,
                });
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
            out.push(Setting {
                file: rel.into(),
                place: (i + 1).to_string(),
                name,
                source: Source::StoreTemplate,
                value,
            });
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
                    out.push(Setting {
                        file: rel.into(),
                        place: (i + 1).to_string(),
                        name,
                        source: Source::Literal,
                        value,
                    });
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
                    out.push(Setting { file: rel.into(), place: line.to_string(), name: name.into(), source, value });
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

// --- Terraform (hcl-rs) -------------------------------------------------------------------------------------

fn parse_hcl(rel: &str, text: &str) -> Body {
    hcl::parse(text).unwrap_or_else(|e| panic!("{rel}: does not parse as HCL: {e}"))
}

/// An attribute's expression.
fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(hcl::Attribute::expr)
}

/// An expression as text: a string literal's value, anything else as written (`var.x`, `"a-${var.b}"`
/// without its quotes).
fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        other => {
            let s = other.to_string();
            s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).map(str::to_owned).unwrap_or(s)
        }
    }
}

/// An attribute's text (see [`text`]).
fn attr_text(body: &Body, key: &str) -> Option<String> {
    attr(body, key).map(text)
}

/// The bodies of the blocks named `identifier` directly inside `body`.
fn blocks<'a>(body: &'a Body, identifier: &'a str) -> impl Iterator<Item = &'a Body> + 'a {
    body.blocks().filter(move |b| b.identifier() == identifier).map(hcl::Block::body)
}

/// The first block named `identifier` directly inside `body`.
fn block<'a>(body: &'a Body, identifier: &str) -> Option<&'a Body> {
    body.blocks().find(|b| b.identifier() == identifier).map(hcl::Block::body)
}

/// Whether a block named `identifier` is anywhere inside `body`.
fn has_nested_block(body: &Body, identifier: &str) -> bool {
    body.blocks().any(|b| b.identifier() == identifier || has_nested_block(b.body(), identifier))
}

/// Every body with an upper-case string `name` attribute sets that environment variable: resource and variable
/// names are lower-case in this repository, while Cloud Run's `env` blocks (and `dynamic "env"`'s `content`)
/// name variables. It takes its value from Secret Manager when it has a `secret_key_ref` and no `value`.
fn terraform_settings(rel: &str, body: &Body) -> Vec<Setting> {
    fn walk(rel: &str, body: &Body, path: &mut Vec<String>, out: &mut Vec<Setting>) {
        if let Some(Expression::String(name)) = attr(body, "name") {
            if is_env_name(name) {
                let by_ref = has_nested_block(body, "secret_key_ref") && attr(body, "value").is_none();
                out.push(Setting {
                    file: rel.into(),
                    place: path.join("."),
                    name: name.clone(),
                    source: if by_ref { Source::SecretStore } else { Source::Literal },
                    value: attr_text(body, "value"),
                });
            }
        }
        for b in body.blocks() {
            path.push(
                std::iter::once(b.identifier())
                    .chain(b.labels().iter().map(hcl::BlockLabel::as_str))
                    .collect::<Vec<_>>()
                    .join("."),
            );
            walk(rel, b.body(), path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(rel, body, &mut Vec::new(), &mut out);
    out
}

// --- Kubernetes YAML (yaml-rust2) -----------------------------------------------------------------------------

fn parse_yaml(rel: &str, text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{rel}: does not parse as YAML: {e}"))
}

/// A scalar as text (`30`, `true` and `"30"` alike).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Container `env` items (`{name: X, value: …}` or `{name: X, valueFrom: {secretKeyRef: …}}`), wherever they
/// are, and the keys of a `kind: Secret`'s `stringData`/`data`, which are the store's own template.
fn yaml_settings(rel: &str, docs: &[Yaml]) -> Vec<Setting> {
    fn walk(rel: &str, y: &Yaml, path: &str, out: &mut Vec<Setting>) {
        match y {
            Yaml::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    if let Some(name) = item["name"].as_str().filter(|n| is_env_name(n)) {
                        let value = scalar(&item["value"]);
                        let by_ref = item["valueFrom"]["secretKeyRef"].as_hash().is_some() && value.is_none();
                        let source = if by_ref { Source::SecretStore } else { Source::Literal };
                        out.push(Setting { file: rel.into(), place: path.clone(), name: name.into(), source, value });
                    }
                    walk(rel, item, &path, out);
                }
            }
            Yaml::Hash(map) => {
                for (k, v) in map {
                    walk(rel, v, &format!("{path}.{}", k.as_str().unwrap_or("?")), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let path = format!("document {}", d + 1);
        if doc["kind"].as_str() == Some("Secret") {
            for key in ["stringData", "data"] {
                for (name, value) in doc[key].as_hash().into_iter().flatten() {
                    let Some(name) = name.as_str().filter(|n| is_env_name(n)) else { continue };
                    out.push(Setting {
                        file: rel.into(),
                        place: format!("{path}.{key}.{name}"),
                        name: name.into(),
                        source: Source::StoreTemplate,
                        value: scalar(value),
                    });
                }
            }
        }
        walk(rel, doc, &path, &mut out);
    }
    out
}

// --- The Google Cloud recipe (deploy/gcp/*.tf) ------------------------------------------------------------

/// The recipe's `.tf` files, parsed: (file name, body), by name. A file that does not parse fails the test that
/// reads it, naming the file and the parser's message.
fn gcp_recipe() -> Vec<(String, Body)> {
    let dir = deploy_dir().join("gcp");
    let mut files: Vec<(String, Body)> = fs::read_dir(&dir)
        .expect("read deploy/gcp")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            let body = parse_hcl(&format!("deploy/gcp/{name}"), &text);
            (name, body)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// Everything the recipe promises but does not do, as readable findings (empty = as promised).
fn gcp_recipe_problems(files: &[(String, Body)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    for name in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
        need(files.iter().any(|(n, _)| n == name), format!("{name}: missing"));
    }
    let top = |identifier: &'static str| {
        files.iter().flat_map(move |(_, body)| body.blocks()).filter(move |b| b.identifier() == identifier)
    };
    let of_type = |rtype: &str| -> Vec<(String, &Body)> {
        top("resource")
            .filter(|b| b.labels().first().is_some_and(|l| l.as_str() == rtype))
            .map(|b| (b.labels().get(1).map(|l| l.as_str().to_owned()).unwrap_or_default(), b.body()))
            .collect()
    };
    let roles =
        |rtype: &str| -> BTreeSet<String> { of_type(rtype).iter().filter_map(|(_, b)| attr_text(b, "role")).collect() };

    // The provider is pinned.
    let google = top("terraform").flat_map(|t| blocks(t.body(), "required_providers")).find_map(|p| attr(p, "google"));
    let pinned = match google {
        Some(Expression::Object(o)) => o.keys().any(|k| match k {
            ObjectKey::Identifier(id) => id.as_str() == "version",
            ObjectKey::Expression(e) => text(e) == "version",
            _ => false,
        }),
        _ => false,
    };
    need(pinned, "versions.tf: the google provider must be pinned".into());

    // Identities and their roles.
    let sas: Vec<String> = of_type("google_service_account").into_iter().map(|(n, _)| n).collect();
    need(sas.len() == 2, format!("expected 2 service accounts (job, invoker), found {sas:?}"));
    need(
        roles("google_bigquery_dataset_iam_member").contains("roles/bigquery.dataEditor"),
        "the job needs roles/bigquery.dataEditor on the dataset".into(),
    );
    let project_roles = roles("google_project_iam_member");
    need(
        project_roles == BTreeSet::from(["roles/bigquery.jobUser".to_owned()]),
        format!("the only project-wide role is roles/bigquery.jobUser; found {project_roles:?}"),
    );

    // Secrets: containers only, values added outside Terraform.
    need(of_type("google_secret_manager_secret").len() == 2, "expected 2 Secret Manager secrets".into());
    need(
        of_type("google_secret_manager_secret_version").is_empty(),
        "secret values must not be in Terraform: its state file would hold them".into(),
    );

    // The job.
    let jobs = of_type("google_cloud_run_v2_job");
    need(jobs.len() == 1, "expected one google_cloud_run_v2_job".into());
    let mut job_sa = String::new();
    for (_, job) in &jobs {
        let Some(task) = block(job, "template").and_then(|t| block(t, "template")) else {
            need(false, "cloud run job: no task template (template { template { … } })".into());
            continue;
        };
        for key in ["timeout", "max_retries", "service_account"] {
            need(attr(task, key).is_some(), format!("cloud run job: task template has no {key}"));
        }
        job_sa = attr_text(task, "service_account").unwrap_or_default();
        let env: Vec<&Body> = block(task, "containers").map(|c| blocks(c, "env").collect()).unwrap_or_default();
        let names: BTreeSet<String> = env.iter().filter_map(|e| attr_text(e, "name")).collect();
        let missing: Vec<&str> = SECRETS.iter().copied().filter(|s| !names.contains(*s)).collect();
        need(missing.is_empty(), format!("cloud run job: {missing:?} not mounted"));
        for e in env {
            let name = attr_text(e, "name").unwrap_or_default();
            if SECRETS.contains(&name.as_str()) {
                let by_ref = block(e, "value_source")
                    .and_then(|v| block(v, "secret_key_ref"))
                    .is_some_and(|r| attr(r, "secret").is_some());
                need(
                    attr(e, "value").is_none() && by_ref,
                    format!("cloud run job: {name} must come from secret_key_ref"),
                );
            }
        }
    }

    // The schedule, and who may start the job.
    let schedulers = of_type("google_cloud_scheduler_job");
    need(schedulers.len() == 1, "expected one google_cloud_scheduler_job".into());
    let mut invoker_sa = String::new();
    for (_, sched) in &schedulers {
        let target = block(sched, "http_target");
        let method = target.and_then(|t| attr_text(t, "http_method"));
        need(method.as_deref() == Some("POST"), "scheduler: jobs.run is a POST".into());
        let uri = target.and_then(|t| attr_text(t, "uri")).unwrap_or_default();
        need(
            uri.starts_with("https://run.googleapis.com/") && uri.ends_with(":run"),
            format!("scheduler: {uri} is not jobs.run"),
        );
        let token = target.and_then(|t| block(t, "oauth_token"));
        need(
            token.is_some_and(|t| attr(t, "service_account_email").is_some()),
            "scheduler: must call with an OAuth token (Google APIs take no OIDC)".into(),
        );
        invoker_sa = token.and_then(|t| attr_text(t, "service_account_email")).unwrap_or_default();
    }
    let invokers = of_type("google_cloud_run_v2_job_iam_member");
    let invoker_roles: Vec<String> = invokers.iter().filter_map(|(_, b)| attr_text(b, "role")).collect();
    need(invoker_roles == ["roles/run.invoker"], "the invoker needs roles/run.invoker on the job".into());
    for (_, b) in &invokers {
        // `member = google_service_account.<sa>.member`: the same account the scheduler signs its calls with,
        // and not the job's own.
        let member = attr_text(b, "member").unwrap_or_default();
        let sa = member.split('.').nth(1).filter(|_| member.matches('.').count() >= 2);
        let prefix = sa.map(|sa| format!("google_service_account.{sa}."));
        need(
            prefix.as_ref().is_some_and(|p| invoker_sa.contains(p.as_str())),
            "scheduler and run.invoker grant name different service accounts".into(),
        );
        need(
            prefix.as_ref().is_some_and(|p| !job_sa.contains(p.as_str())),
            "the invoker must not be the job's own service account".into(),
        );
    }

    // Inputs and outputs say what they are.
    for v in top("variable") {
        let name = v.labels().first().map(hcl::BlockLabel::as_str).unwrap_or("?");
        need(
            attr(v.body(), "description").is_some() && attr(v.body(), "type").is_some(),
            format!("variable {name}: needs a description and a type"),
        );
    }
    for o in top("output") {
        let name = o.labels().first().map(hcl::BlockLabel::as_str).unwrap_or("?");
        need(attr(o.body(), "description").is_some(), format!("output {name}: needs a description"));
    }
    problems
}

// --- The crontab ------------------------------------------------------------------------------------------

/// Whether a crontab's five time fields are a valid schedule: each field a comma list of `*`, `N` or `N-M`,
/// each optionally `/step`, within the field's range; months and weekdays also by their English names.
fn is_valid_schedule(fields: &[&str]) -> bool {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    // (lowest, highest, names for lowest.., or none); Sunday is 0 or 7.
    let ranges: [(u32, u32, &[&str]); 5] = [(0, 59, &[]), (0, 23, &[]), (1, 31, &[]), (1, 12, &MONTHS), (0, 7, &DAYS)];
    fields.len() == 5
        && fields.iter().zip(ranges).all(|(field, (lo, hi, names))| {
            let value = |s: &str| -> Option<u32> {
                let n = s
                    .parse::<u32>()
                    .ok()
                    .or_else(|| names.iter().position(|m| m.eq_ignore_ascii_case(s)).map(|i| lo + i as u32))?;
                (lo..=hi).contains(&n).then_some(n)
            };
            field.split(',').all(|item| {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<u32>().ok().filter(|&s| s > 0).map(Some)),
                    None => (item, Some(None)),
                };
                let range_ok = range == "*"
                    || match range.split_once('-') {
                        Some((a, b)) => value(a).zip(value(b)).is_some_and(|(a, b)| a <= b),
                        None => value(range).is_some(),
                    };
                range_ok && step.is_some()
            })
        })
}

/// `NAME=value` (any identifier): a variable for cron or the commands, not a job line.
fn is_cron_variable(line: &str) -> bool {
    line.split_once('=').is_some_and(|(name, _)| {
        name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Whether the command takes a lock without waiting: the first word after `flock` is `-n` (alone or among
/// other single-letter options, e.g. `-xn`) or `--nonblock`.
fn uses_flock_nonblock(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.windows(2).any(|w| {
        (w[0] == "flock" || w[0].ends_with("/flock"))
            && (w[1] == "--nonblock"
                || w[1].strip_prefix('-').is_some_and(|o| {
                    !o.starts_with('-') && o.contains('n') && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }))
    })
}

/// Everything wrong with a crontab in /etc/cron.d format, as readable findings (empty = fine). Whether each
/// command is good shell is shellcheck's job (`scripts/lint-deploy.sh`).
fn crontab_problems(rel: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut jobs = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || is_cron_variable(line) {
            continue;
        }
        // Five time fields, a user, then the command (the rest of the line, spaces and all).
        let mut fields = Vec::new();
        let mut rest = line;
        while fields.len() < 6 {
            let Some((field, tail)) = rest.split_once(char::is_whitespace) else { break };
            fields.push(field);
            rest = tail.trim_start();
        }
        if fields.len() < 6 || rest.is_empty() {
            problems.push(format!("{rel}:{n}: expected 5 time fields, a user and a command (/etc/cron.d format)"));
            continue;
        }
        jobs += 1;
        let (user, command) = (fields[5], rest);
        if !is_valid_schedule(&fields[..5]) {
            problems.push(format!("{rel}:{n}: invalid schedule {:?}", fields[..5].join(" ")));
        }
        if user == "root" {
            problems.push(format!("{rel}:{n}: runs as root; use the job's own user"));
        }
        if !uses_flock_nonblock(command) {
            problems.push(format!("{rel}:{n}: does not use `flock -n`, so runs could overlap"));
        }
        if command.contains('%') {
            problems.push(format!("{rel}:{n}: a bare % ends the command in crontab; escape it as \\%"));
        }
    }
    if jobs == 0 {
        problems.push(format!("{rel}: no job line"));
    }
    problems
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
                leaks.push(format!("{}: {} holds a value, not a placeholder", s.at(), s.name));
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

#[test]
fn the_gcp_recipe_has_the_shape_it_promises() {
    let problems = gcp_recipe_problems(&gcp_recipe());
    assert!(problems.is_empty(), "deploy/gcp:\n  {}", problems.join("\n  "));
}

#[test]
fn the_crontab_runs_unprivileged_without_overlap_on_a_valid_schedule() {
    let path = deploy_dir().join("cron/crontab");
    let text = fs::read_to_string(&path).expect("read deploy/cron/crontab");
    let problems = crontab_problems("deploy/cron/crontab", &text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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

fn hcl(text: &str) -> Body {
    parse_hcl("sample", text)
}

fn yaml(text: &str) -> Vec<Yaml> {
    parse_yaml("sample", text)
}

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
        &hcl(
            "env {\n  name  = \"ZOHO_REFRESH_TOKEN\" # secret_key_ref is only in this comment\n  value = \"abc\"\n}\n"
        ),
    )));
    assert!(literal(yaml_settings("y", &yaml("env:\n  - name: ZOHO_REFRESH_TOKEN\n    value: abc\n"))));
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
        &hcl("env {\n  name = \"ZOHO_REFRESH_TOKEN\"\n  value_source {\n    secret_key_ref {\n      secret = \"s\"\n    }\n  }\n}\n"),
    )));
    assert!(by_ref(yaml_settings(
        "y",
        &yaml("env:\n  - name: ZOHO_REFRESH_TOKEN\n    valueFrom:\n      secretKeyRef:\n        name: s\n        key: k\n"),
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
    let found = yaml_settings("y", &yaml(secret));
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

// --- The policy checks catch what they are for --------------------------------------------------------------

/// The recipe with one file's text changed by `edit`, checked.
fn recipe_problems_after(file: &str, edit: impl Fn(&str) -> String) -> Vec<String> {
    let dir = deploy_dir().join("gcp");
    let mut files = gcp_recipe();
    let text = fs::read_to_string(dir.join(file)).expect("read the recipe");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing in {file}");
    let body = parse_hcl(file, &edited);
    files.iter_mut().find(|(n, _)| n == file).expect("file in the recipe").1 = body;
    gcp_recipe_problems(&files)
}

#[test]
fn the_gcp_recipe_checks_catch_a_secret_value_a_wide_role_an_oidc_call_and_a_shared_identity() {
    let has = |problems: &[String], needle: &str| problems.iter().any(|p| p.contains(needle));

    let p = recipe_problems_after("main.tf", |t| {
        format!("{t}\nresource \"google_secret_manager_secret_version\" \"v\" {{\n  secret      = \"s\"\n  secret_data = \"x\"\n}}\n")
    });
    assert!(has(&p, "secret values must not be in Terraform"), "{p:?}");

    let p = recipe_problems_after("main.tf", |t| t.replace("roles/bigquery.jobUser", "roles/bigquery.admin"));
    assert!(has(&p, "the only project-wide role is roles/bigquery.jobUser"), "{p:?}");

    let p = recipe_problems_after("main.tf", |t| t.replace("oauth_token {", "oidc_token {"));
    assert!(has(&p, "must call with an OAuth token"), "{p:?}");

    let p = recipe_problems_after("main.tf", |t| {
        t.replace("member   = google_service_account.invoker.member", "member   = google_service_account.job.member")
    });
    assert!(has(&p, "scheduler and run.invoker grant name different service accounts"), "{p:?}");
    assert!(has(&p, "the invoker must not be the job's own service account"), "{p:?}");

    let p = recipe_problems_after("main.tf", |t| t.replacen("      timeout ", "      # timeout ", 1));
    assert!(has(&p, "task template has no timeout"), "{p:?}");

    let p = recipe_problems_after("versions.tf", |t| t.replace("version = \"~> 6.0\"", ""));
    assert!(has(&p, "the google provider must be pinned"), "{p:?}");

    let p = recipe_problems_after("variables.tf", |t| format!("{t}\nvariable \"undocumented\" {{}}\n"));
    assert!(has(&p, "variable undocumented: needs a description and a type"), "{p:?}");
}

#[test]
fn the_crontab_checks_catch_root_overlap_a_bad_schedule_a_bare_percent_and_no_job() {
    let problems = |text: &str| crontab_problems("c", text);
    let good = "SHELL=/bin/sh\n30 2 * * * sync flock -n /l zoho-deals-sync\n";
    assert_eq!(problems(good), Vec::<String>::new());
    assert!(problems("30 2 * * * root flock -n /l zoho-deals-sync\n")[0].contains("runs as root"));
    assert!(problems("30 2 * * * sync zoho-deals-sync\n")[0].contains("flock -n"));
    assert!(problems("30 2 * * * sync flock /l zoho-deals-sync\n")[0].contains("flock -n"));
    assert!(problems("30 25 * * * sync flock -n /l zoho-deals-sync\n")[0].contains("invalid schedule"));
    assert!(problems("30 2 * * * sync flock -n /l date +%F\n")[0].contains("bare %"));
    assert!(problems("30 2 * * sync\n")[0].contains("expected 5 time fields"));
    assert_eq!(problems("# nothing\nPATH=/bin\n"), ["c: no job line"]);
}

#[test]
fn cron_schedules_are_validated_field_by_field() {
    let valid = |s: &str| is_valid_schedule(&s.split_whitespace().collect::<Vec<_>>());
    for ok in ["30 2 * * *", "*/15 * * * *", "0 0-6/2 1,15 jan-mar mon-fri", "0 0 * * 7", "59 23 31 12 sun"] {
        assert!(valid(ok), "{ok} should be valid");
    }
    for bad in [
        "60 2 * * *",
        "30 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "x * * * *",
        "* * * *",
    ] {
        assert!(!valid(bad), "{bad} should be invalid");
    }
}

#[test]
fn flock_counts_only_when_it_does_not_wait() {
    assert!(uses_flock_nonblock("flock -n -E 9 /l cmd"));
    assert!(uses_flock_nonblock("/usr/bin/flock --nonblock /l cmd"));
    assert!(uses_flock_nonblock("flock -xn /l cmd"));
    assert!(!uses_flock_nonblock("flock /l cmd"));
    assert!(!uses_flock_nonblock("flock -E 9 -n /l cmd"), "the first option decides, as the linter it replaces did");
}
