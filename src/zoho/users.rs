//! Deal owners' full names. COQL's `Owner` lookup carries only the user's **last** name (v7 COQL doc;
//! docs/zoho-api.md §3f), so the job reads the org's users once per run from the users API
//! (`GET /crm/v8/users?type=AllUsers`, 200 per page: one call for most orgs) and keeps their full names by id.
//!
//! Why the users API and not `Owner.first_name` / `Owner.last_name` joins in the deal query: the API is
//! documented for this, while whether an org allows those joins is unconfirmed — and a refused join would fail
//! the won-deal query itself, every night. The users API needs the scope `ZohoCRM.users.READ`; without it (or
//! without the profile permission) the run goes on with the last names COQL gives, and says so once in a warning.
//! Not here: mapping a record to a [`Deal`] (`model.rs`).

use std::collections::HashMap;

use serde_json::Value;

use super::client::ZohoClient;
use super::Error;
use crate::deal::Deal;

/// Users per page (the users API's maximum).
const PER_PAGE: u32 = 200;
/// More pages than this means something is wrong with paging; 20,000 users is far beyond any org's.
const MAX_PAGES: u32 = 100;

/// Full names of the org's users, by user id. Empty when the users API could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerNames {
    by_id: HashMap<String, String>,
}

impl OwnerNames {
    /// Reads every user's full name. A missing scope or permission, or an answer we cannot read, degrades to
    /// an empty map (owners keep the last name COQL gives) with one warning; a failure that stops the run anyway
    /// (credentials, throttling, the credit budget) is returned.
    pub async fn load(client: &ZohoClient) -> Result<OwnerNames, Error> {
        match Self::fetch(client).await {
            Ok(names) => {
                tracing::debug!(users = names.by_id.len(), "read the users' full names");
                Ok(names)
            }
            Err(e) => super::without_optional(
                e,
                "could not read the users' full names: owner_name holds the owner's last name only (COQL gives no \
                 more); add the scope ZohoCRM.users.READ to the refresh token to store full names",
                OwnerNames::default(),
            ),
        }
    }

    async fn fetch(client: &ZohoClient) -> Result<OwnerNames, Error> {
        let mut names = OwnerNames::default();
        for page in 1..=MAX_PAGES {
            let query =
                [("type", "AllUsers".to_owned()), ("page", page.to_string()), ("per_page", PER_PAGE.to_string())];
            let Some(body) = client.get("users", &query, &[]).await? else { break };
            let more = names.add_page(&body)?;
            if !more {
                break;
            }
        }
        Ok(names)
    }

    /// Adds one page of `GET /users`; returns whether Zoho says there are more.
    pub fn add_page(&mut self, body: &Value) -> Result<bool, Error> {
        let users =
            body.get("users").and_then(Value::as_array).ok_or_else(|| Error::malformed("users", "no `users` array"))?;
        for u in users {
            let Some(id) = u.get("id").and_then(Value::as_str) else { continue };
            if let Some(name) = full_name(u) {
                self.by_id.insert(id.to_owned(), name);
            }
        }
        Ok(body.pointer("/info/more_records").and_then(Value::as_bool).unwrap_or(false) && !users.is_empty())
    }

    /// The full name of user `id`, if known.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    /// Replaces a deal's owner name (COQL's last name) by the owner's full name, when known.
    pub fn apply(&self, deal: &mut Deal) {
        if let Some(full) = deal.owner_id.as_deref().and_then(|id| self.get(id)) {
            deal.owner_name = Some(full.to_owned());
        }
    }
}

/// `full_name`, or `first_name last_name` when Zoho leaves `full_name` out.
fn full_name(user: &Value) -> Option<String> {
    let text = |k: &str| user.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    match text("full_name") {
        Some(full) => Some(full.to_owned()),
        None => {
            let parts: Vec<&str> = [text("first_name"), text("last_name")].into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owners_get_their_full_name_and_unknown_owners_keep_the_last_name() {
        let mut names = OwnerNames::default();
        let more = names
            .add_page(&json!({"users":[
                {"id":"1","first_name":"Patricia","last_name":"Boyle","full_name":"Patricia Boyle"},
                {"id":"2","first_name":"Ravi","last_name":"Shankar"},
                {"id":"3","last_name":"Cher"},
                {"first_name":"No","last_name":"Id"}],
                "info":{"more_records":true}}))
            .expect("a page");
        assert!(more);
        assert_eq!(names.get("1"), Some("Patricia Boyle"));
        assert_eq!(names.get("2"), Some("Ravi Shankar"), "first and last name when full_name is absent");
        assert_eq!(names.get("3"), Some("Cher"));

        let mut deal = crate::zoho::model::to_deal(&json!({"id":"9","Modified_Time":"2026-11-27T10:15:00Z",
            "Owner":{"name":"Boyle","id":"1"}}))
        .expect("maps");
        names.apply(&mut deal);
        assert_eq!(deal.owner_name.as_deref(), Some("Patricia Boyle"));
        let mut stranger = crate::zoho::model::to_deal(&json!({"id":"9","Modified_Time":"2026-11-27T10:15:00Z",
            "Owner":{"name":"Smith","id":"77"}}))
        .expect("maps");
        names.apply(&mut stranger);
        assert_eq!(stranger.owner_name.as_deref(), Some("Smith"));
    }

    #[test]
    fn a_page_without_users_is_malformed() {
        assert!(OwnerNames::default().add_page(&json!({"data": []})).is_err());
    }
}
