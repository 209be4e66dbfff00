//! The opt-in access-token file (`ZOHO_TOKEN_CACHE=PATH`): lets back-to-back runs (a backfill loop, a retry
//! after a failure) reuse one access token instead of minting one each, since Zoho allows only 10 mints per
//! refresh token per 10 minutes (docs/zoho-api.md §1.6).
//!
//! The trade-off: an access token lies on disk for up to its lifetime (an hour). So the file is created with
//! mode 0600 (owner only), written atomically (a temporary file renamed over it), and holds only the access
//! token, its `api_domain` and its expiry — never the refresh token or the client secret. It is keyed to a
//! hash of the client id, the accounts URL and the refresh token, so a changed credential or data centre never
//! picks up a token minted for another. Anything wrong with the file (missing, unreadable, garbage, foreign,
//! expired) means "no cached token" and a debug line: the run mints as it would without the file.
//! Not here: the in-memory cache and single-flight (`auth.rs`, which calls [`TokenCache::load`] before minting,
//! [`TokenCache::store`] after, and [`TokenCache::clear`] on 401).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::ZohoCredentials;

/// The file format's version: a file of another version is ignored.
const VERSION: u32 = 1;

/// A token read back from the file.
#[derive(Debug)]
pub struct CachedToken {
    pub access_token: SecretString,
    pub api_domain: Url,
    pub expires_at: DateTime<Utc>,
}

/// The file's content. Deliberately not `Debug`: it holds the access token.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Hash of client id, accounts URL and refresh token (see [`credential_key`]).
    key: String,
    access_token: String,
    api_domain: String,
    /// Unix seconds.
    expires_at: i64,
}

/// The access-token file of one set of credentials.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
    key: String,
}

impl TokenCache {
    /// The cache at `path` for these credentials and accounts server.
    pub fn new(path: &Path, credentials: &ZohoCredentials, accounts_url: &Url) -> TokenCache {
        TokenCache { path: path.to_owned(), key: credential_key(credentials, accounts_url) }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached token if the file holds one for these credentials that is still valid `margin` from now.
    pub fn load(&self, now: DateTime<Utc>, margin: std::time::Duration) -> Option<CachedToken> {
        let path = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path, "no cached Zoho access token yet");
                return None;
            }
            Err(e) => {
                tracing::debug!(path = %path, error = %e, "ignoring the Zoho token cache: unreadable");
                return None;
            }
        };
        let Ok(file) = serde_json::from_str::<CacheFile>(&text) else {
            tracing::debug!(path = %path, "ignoring the Zoho token cache: not a token cache file");
            return None;
        };
        if file.version != VERSION || file.key != self.key {
            tracing::debug!(path = %path, "ignoring the Zoho token cache: it belongs to other credentials");
            return None;
        }
        let expires_at = DateTime::<Utc>::from_timestamp(file.expires_at, 0)?;
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
        if expires_at - margin <= now {
            tracing::debug!(path = %path, "ignoring the Zoho token cache: the token has expired");
            return None;
        }
        let Ok(api_domain) = Url::parse(&file.api_domain) else {
            tracing::debug!(path = %path, "ignoring the Zoho token cache: its api_domain is not a URL");
            return None;
        };
        tracing::debug!(path = %path, expires_at = %crate::deal::format_utc(&expires_at), "reusing the cached Zoho access token");
        Some(CachedToken { access_token: SecretString::from(file.access_token), api_domain, expires_at })
    }

    /// Writes the token (best effort: a failure is logged and the run goes on with its in-memory token).
    pub fn store(&self, access_token: &SecretString, api_domain: &Url, expires_at: DateTime<Utc>) {
        let file = CacheFile {
            version: VERSION,
            key: self.key.clone(),
            access_token: access_token.expose_secret().to_owned(),
            api_domain: api_domain.to_string(),
            expires_at: expires_at.timestamp(),
        };
        if let Err(e) = self.write(&file) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not write the Zoho token cache (ZOHO_TOKEN_CACHE); the next run mints");
        }
    }

    /// Removes the file (Zoho refused its token).
    pub fn clear(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::debug!(path = %self.path.display(), "removed the rejected token from the Zoho token cache");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "could not remove the Zoho token cache"),
        }
    }

    /// Writes a temporary file created 0600 next to the target, then renames it over the target: a reader sees
    /// the old file or the new one, never half of one, and the token is never in a file others can read.
    fn write(&self, file: &CacheFile) -> std::io::Result<()> {
        let json = serde_json::to_vec(file).map_err(std::io::Error::other)?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = self.path.with_file_name(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = (|| {
            let mut f = options.open(&tmp)?;
            // A temporary left by a crashed run may predate the mode above: set it again.
            #[cfg(unix)]
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// A hash of what identifies a token's owner: client id, accounts server and refresh token. Only an identity
/// check (a token for other credentials is not used), not a secret: whoever can read the file holds the token
/// anyway. `DefaultHasher` may change between Rust releases; a changed hash only costs one mint.
fn credential_key(credentials: &ZohoCredentials, accounts_url: &Url) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    credentials.client_id.hash(&mut h);
    accounts_url.as_str().trim_end_matches('/').hash(&mut h);
    credentials.refresh_token.expose_secret().hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn creds(refresh: &str) -> ZohoCredentials {
        ZohoCredentials {
            client_id: "1000.CLIENT".into(),
            client_secret: SecretString::from("client-s3cr3t".to_owned()),
            refresh_token: SecretString::from(refresh.to_owned()),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    const MARGIN: Duration = Duration::from_secs(300);

    #[test]
    fn a_stored_token_is_read_back_by_the_same_credentials() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token.json");
        let c = TokenCache::new(&path, &creds("1000.refresh-value"), &url("https://accounts.zoho.eu"));
        c.store(
            &SecretString::from("1000.access".to_owned()),
            &url("https://www.zohoapis.eu"),
            now() + chrono::Duration::hours(1),
        );
        let t = c.load(now(), MARGIN).expect("cached");
        assert_eq!(t.access_token.expose_secret(), "1000.access");
        assert_eq!(t.api_domain.as_str(), "https://www.zohoapis.eu/");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_owner_only_and_never_holds_the_refresh_token_or_client_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token.json");
        let c = TokenCache::new(&path, &creds("1000.refresh-value"), &url("https://accounts.zoho.eu"));
        c.store(&SecretString::from("1000.access".to_owned()), &url("https://www.zohoapis.eu"), now());
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("refresh-value") && !text.contains("client-s3cr3t"), "{text}");
    }

    #[test]
    fn other_credentials_or_another_data_centre_never_use_the_token() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token.json");
        let eu = url("https://accounts.zoho.eu");
        TokenCache::new(&path, &creds("1000.refresh-value"), &eu).store(
            &SecretString::from("1000.access".to_owned()),
            &url("https://www.zohoapis.eu"),
            now() + chrono::Duration::hours(1),
        );
        assert!(TokenCache::new(&path, &creds("1000.other-refresh"), &eu).load(now(), MARGIN).is_none());
        assert!(TokenCache::new(&path, &creds("1000.refresh-value"), &url("https://accounts.zoho.com"))
            .load(now(), MARGIN)
            .is_none());
    }

    #[test]
    fn an_expired_token_a_garbage_file_or_no_file_means_no_cached_token() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token.json");
        let c = TokenCache::new(&path, &creds("r"), &url("https://accounts.zoho.eu"));
        assert!(c.load(now(), MARGIN).is_none(), "no file");
        c.store(
            &SecretString::from("a".to_owned()),
            &url("https://www.zohoapis.eu"),
            now() + chrono::Duration::minutes(4),
        );
        assert!(c.load(now(), MARGIN).is_none(), "within the refresh margin of expiry");
        std::fs::write(&path, "not json").expect("write");
        assert!(c.load(now(), MARGIN).is_none(), "garbage");
    }

    #[test]
    fn clear_removes_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token.json");
        let c = TokenCache::new(&path, &creds("r"), &url("https://accounts.zoho.eu"));
        c.store(
            &SecretString::from("a".to_owned()),
            &url("https://www.zohoapis.eu"),
            now() + chrono::Duration::hours(1),
        );
        c.clear();
        assert!(!path.exists());
        c.clear();
    }
}
