//! The sandbox's CRM data: users, accounts, contacts and deals, generated deterministically from a seed,
//! plus the mutations tests apply while a job runs (`POST /__sandbox/mutate`).
//!
//! Deals are kept as the exact JSON object Get Records would send (`serde_json::Map`), so every read
//! path renders the same bytes and the truth endpoint can hand out the very same records.
//! Timestamps are relative to the start time floored to the second; "now" is always the real wall clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::{fmt_date, fmt_datetime, parse_datetime};
use crate::config::History;
use crate::meta::{self, Category, FieldDef, FieldType, FormulaType, Module, ID_BASE, LAYOUT_ID, STAGES};
use crate::org::{Org, Profile, PARTNER_PIPELINE, STANDARD_PIPELINE};
use crate::rng::Rng;

/// A CRM user (deal owner, creator, modifier).
#[derive(Debug, Clone)]
pub struct User {
    /// Record id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
}

impl User {
    /// "First Last".
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }

    /// The `{"name","id","email"}` shape Get Records uses for Owner/Created_By/Modified_By.
    pub fn minified(&self) -> Value {
        json!({"name": self.full_name(), "id": self.id.to_string(), "email": self.email})
    }

    /// `GET /users` shape.
    pub fn user_json(&self, tz: FixedOffset) -> Value {
        json!({
            "id": self.id.to_string(),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name(),
            "email": self.email,
            "status": "active",
            "confirm": true,
            "role": {"name": if self.id == USERS_BASE { "CEO" } else { "Sales Rep" }, "id": (ID_BASE + 8_001).to_string()},
            "profile": {"name": if self.id == USERS_BASE { "Administrator" } else { "Standard" }, "id": (ID_BASE + 8_101).to_string()},
            "time_zone": time_zone_name(tz),
            "locale": "en_US",
            "language": "en_US",
        })
    }
}

/// The time-zone name Zoho shows for the API user's offset (the sandbox knows only offsets).
fn time_zone_name(tz: FixedOffset) -> String {
    if tz.local_minus_utc() == 19_800 {
        "Asia/Kolkata".to_string()
    } else {
        format!("GMT{tz}")
    }
}

/// An account (target of Account_Name).
#[derive(Debug, Clone)]
pub struct Account {
    /// Record id.
    pub id: u64,
    /// Account_Name.
    pub name: String,
    /// Industry.
    pub industry: String,
    /// Website.
    pub website: String,
    /// Billing_City.
    pub city: String,
    /// Billing_Country.
    pub country: String,
}

/// A contact (target of Contact_Name).
#[derive(Debug, Clone)]
pub struct Contact {
    /// Record id.
    pub id: u64,
    /// First_Name.
    pub first_name: String,
    /// Last_Name.
    pub last_name: String,
    /// Email.
    pub email: String,
}

impl Contact {
    /// Full_Name.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// A deleted deal, as the deleted-records API lists it.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// Record id.
    pub id: u64,
    /// When it was deleted.
    pub deleted_time: DateTime<Utc>,
    /// `recycle` (in the recycle bin) or `permanent` (purged).
    pub kind: &'static str,
    /// The deal's name.
    pub display_name: String,
    /// Index into users of who deleted it.
    pub deleted_by: usize,
    /// Index into users of who created it.
    pub created_by: usize,
}

/// Counts for `POST /__sandbox/mutate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MutationRequest {
    /// Open deals to move into a won stage.
    pub win: usize,
    /// Won deals to move back to an open stage.
    pub unwin: usize,
    /// Won deals to delete (recycle bin).
    pub delete: usize,
    /// Won deals whose amount and name change.
    pub edit: usize,
    /// New deals created directly in a won stage.
    pub create_won: usize,
    /// Won deals given a malformed value (a text Amount, an impossible Closing_Date, a numeric Stage), as a
    /// misbehaving integration might write them; the job must quarantine them and store the rest.
    pub corrupt: usize,
    /// Won deals given a custom value that does not fit its column: an `Account_Number_Long` (bigint) beyond 64
    /// bits. Only on orgs with that field (the exotic profile); the job must quarantine them, naming the field.
    pub misfit: usize,
    /// Won deals given a misfit value by `misfit` get a fitting one back (a later, readable version).
    pub refit: usize,
    /// Won deals given a `Unit_Rate` (a 12-place decimal) of 10^40: beyond even BigQuery's BIGNUMERIC (38 integer
    /// digits). Only on orgs with that field (the exotic profile); the job must quarantine them, naming the field.
    pub misfit_decimal: usize,
    /// When not empty, only these deal ids are picked (a test moving given deals between runs: win a deal it
    /// un-won before, edit one it just won).
    pub only: Vec<String>,
}

/// Ids touched by one mutation call, per kind (fewer than asked when not enough deals qualify).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MutationResult {
    /// Deals moved to a won stage.
    pub win: Vec<String>,
    /// Deals moved out of the won stages.
    pub unwin: Vec<String>,
    /// Deals deleted.
    pub delete: Vec<String>,
    /// Deals edited.
    pub edit: Vec<String>,
    /// Deals created won.
    pub create_won: Vec<String>,
    /// Deals given a malformed field.
    pub corrupt: Vec<String>,
    /// Deals given a custom value beyond its column's type.
    pub misfit: Vec<String>,
    /// Deals whose misfit value was replaced by a fitting one.
    pub refit: Vec<String>,
    /// Deals given a decimal beyond BIGNUMERIC.
    pub misfit_decimal: Vec<String>,
    /// The `Modified_Time` (and `deleted_time`) given to every touched record.
    pub modified_time: String,
}

/// The custom field `misfit` breaks, and the value it gives it: 2^64 + 1, beyond any 64-bit integer column.
const MISFIT_FIELD: &str = "Account_Number_Long";
const MISFIT_VALUE: &str = "18446744073709551617";
/// The decimal field `misfit_decimal` breaks (its value: 1e40, a JSON number whatever serde_json's features).
const MISFIT_DECIMAL_FIELD: &str = "Unit_Rate";

const USERS_BASE: u64 = ID_BASE + 10_001;
const ACCOUNTS_BASE: u64 = ID_BASE + 300_000;
const CONTACTS_BASE: u64 = ID_BASE + 400_000;
const DEALS_BASE: u64 = ID_BASE + 1_000_000;
const HORIZON_SECS: i64 = 120 * 86_400;
const DAY_SECS: i64 = 86_400;

/// Names that break naive CSV/SQL/JSON handling.
const AWKWARD_NAMES: &[&str] = &[
    "Müller GmbH — 年度契約",
    "O'Brien \"Big\" deal",
    "Ça coûte cher: société générale",
    "日本語の商談 (東京)",
    "Smith & Sons <expansion>",
    "Back\\slash; DROP TABLE deals;--",
    "Comma, Inc. 'quoted' renewal",
    "Emoji 🚀 launch",
    "Tab\tseparated\tdeal",
    "  leading and trailing spaces  ",
];

const PRODUCTS: &[&str] = &[
    "Annual licence",
    "Renewal",
    "Expansion",
    "Pilot",
    "Support plan",
    "Implementation",
    "Upsell",
    "Multi-year agreement",
];

/// Everything the sandbox serves.
#[derive(Debug, Clone)]
pub struct Store {
    /// The org's shape: its fields, stages and pipelines.
    pub org: Org,
    /// The API user's offset; every datetime is rendered in it.
    pub tz: FixedOffset,
    /// Live deals by id, each the full Zoho JSON record. Private so that every change goes through this
    /// file, which keeps [`Store::modified_between`]'s index in step; read it with [`Store::deals`].
    deals: BTreeMap<u64, Map<String, Value>>,
    /// The live deals' `(Modified_Time, id)`, in that order, with each one's `Stage`: the index a real CRM keeps
    /// on its system timestamps. Only the sandbox's CPU depends on it: a COQL scan reads the two fields every
    /// query of the job filters on from here instead of from 200,000 records' maps, and still checks every
    /// row it yields against the whole filter.
    by_modified: BTreeMap<(DateTime<Utc>, u64), Option<Box<str>>>,
    /// Each indexed deal's `Modified_Time` as the index holds it.
    modified_of: HashMap<u64, DateTime<Utc>>,
    /// Deleted deals, oldest first.
    pub deleted: Vec<Deleted>,
    /// Users; the first is the API user (`type=CurrentUser`).
    pub users: Vec<User>,
    /// Accounts.
    pub accounts: Vec<Account>,
    /// Contacts.
    pub contacts: Vec<Contact>,
    user_idx: HashMap<u64, usize>,
    account_idx: HashMap<u64, usize>,
    contact_idx: HashMap<u64, usize>,
    next_id: u64,
    rng: Rng,
    /// Fields added at run time: filled in on every record modified after they were added.
    added_fields: Vec<FieldDef>,
    /// Next `Deal_Number` of the exotic profile's auto-number field.
    next_auto_number: u64,
    /// Stage changes made since the sandbox started, per deal (issue #11; see [`Store::stage_history_json`]).
    stage_changes: HashMap<u64, Vec<(String, DateTime<Utc>)>>,
}

/// The org's currencies in a multi-currency profile: ISO code, rate (units per one home unit, with up to 9
/// decimals as Zoho keeps them: docs/zoho-api.md §5.5) and symbol. USD is home. Deals carry their currency's rate
/// as their `Exchange_Rate`.
pub const CURRENCIES: &[(&str, &str, &str)] =
    &[("USD", "1", "$"), ("EUR", "0.92", "€"), ("INR", "83.1234", "₹"), ("GBP", "0.787654321", "£")];

fn users() -> Vec<User> {
    let names = [
        ("Patricia", "Boyle"),
        ("José", "Núñez"),
        ("Aiko", "Tanaka"),
        ("Sean", "O'Connor"),
        ("Priya", "Raman"),
        ("Lars", "Øvergaard"),
        ("Amara", "Okafor"),
        ("Chen", "Wei"),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, (first, last))| User {
            id: USERS_BASE + i as u64 * 17,
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: format!("user{}@zylker.example", i + 1),
        })
        .collect()
}

fn accounts(rng: &mut Rng) -> Vec<Account> {
    let prefixes = [
        "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Hooli", "Vandelay", "Soylent", "Tyrell",
        "Zylker", "Müller", "O'Reilly", "Sakura",
    ];
    let suffixes = ["Corp", "GmbH", "Ltd", "Inc.", "S.A.", "Pvt Ltd", "LLC", "AG"];
    let industries = ["Technology", "Manufacturing", "Retail", "Finance", "Healthcare", "Education"];
    let places = [
        ("Chennai", "India"),
        ("Austin", "United States"),
        ("München", "Germany"),
        ("Lyon", "France"),
        ("Osaka", "Japan"),
        ("Dublin", "Ireland"),
    ];
    let mut out = Vec::new();
    for (i, p) in prefixes.iter().enumerate() {
        for (j, s) in suffixes.iter().enumerate() {
            let n = i * suffixes.len() + j;
            let (city, country) = places[rng.index(places.len())];
            out.push(Account {
                id: ACCOUNTS_BASE + n as u64 * 11,
                name: format!("{p} {s}"),
                industry: industries[rng.index(industries.len())].to_string(),
                website: format!("https://{}.example", p.to_lowercase().replace('\'', "")),
                city: city.to_string(),
                country: country.to_string(),
            });
        }
    }
    out
}

fn contacts(rng: &mut Rng) -> Vec<Contact> {
    let firsts = ["Jane", "John", "Ana", "Ravi", "Mei", "Olu", "Zoë", "Björn", "Fatima", "Diego"];
    let lasts = ["Roe", "Doe", "García", "Iyer", "Lin", "Adeyemi", "D'Arcy", "Schmidt", "Haddad"];
    let mut out = Vec::new();
    for n in 0..300u64 {
        let first = firsts[rng.index(firsts.len())];
        let last = lasts[rng.index(lasts.len())];
        out.push(Contact {
            id: CONTACTS_BASE + n * 7,
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: format!("{}.{}{}@customer.example", first.to_lowercase(), n, last.len()),
        });
    }
    out
}

fn money(cents: i64) -> Value {
    // Zoho sends whole amounts as integers (`100000`) and others with their cents (`12500.1`).
    if cents % 100 == 0 {
        Value::from(cents / 100)
    } else {
        serde_json::Number::from_f64(cents as f64 / 100.0).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// A positive JSON number with exactly `places` decimals (the last one not 0) and at most 15 significant digits
/// in all, so that its text survives serde_json with or without `arbitrary_precision` (any decimal of 15
/// significant digits reads back from an f64 digit for digit). With 12 places: `1.234567890123` to
/// `999.999999999999`, which BigQuery's NUMERIC (9 places) would round.
fn exact_decimal(rng: &mut Rng, places: u32) -> Value {
    let places = places.clamp(1, 14);
    let integer_digits = 15 - places;
    let whole = rng.range(1, 10_i64.pow(integer_digits) - 1);
    let fraction = rng.range(0, 10_i64.pow(places - 1) - 1) * 10 + rng.range(1, 9);
    let text = format!("{whole}.{fraction:0width$}", width = places as usize);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Reads an amount back to cents (records only ever hold what [`money`] wrote).
fn cents_of(v: &Value) -> Option<i64> {
    v.as_f64().map(|f| (f * 100.0).round() as i64)
}

struct Facts {
    id: u64,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
}

/// [`History::Uniform`]: created evenly over the last 120 days, 38% modified in the last day, plus mass updates.
fn uniform_facts(rng: &mut Rng, total: usize, now: DateTime<Utc>) -> Vec<Facts> {
    // Ids grow with creation time (as Zoho's do) but with gaps, and Modified_Time is unrelated
    // to id order, so keyset paging on id and windowing on Modified_Time are both exercised.
    let start = now - Duration::seconds(HORIZON_SECS);
    let slot = (HORIZON_SECS / i64::try_from(total.max(1)).unwrap_or(i64::MAX)).max(1);
    let latest = now - Duration::seconds(1);
    let mut facts = Vec::with_capacity(total);
    let mut id = DEALS_BASE;
    for i in 0..total {
        id += rng.range_u64(1, 2500);
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        let c = start + Duration::seconds(i * slot + rng.below_i64(slot));
        let created = c.min(now - Duration::seconds(2));
        let modified = if rng.chance(0.38) {
            // a good share touched within the last day
            let lo = created.max(now - Duration::seconds(DAY_SECS));
            lo + Duration::seconds(rng.below_i64((latest - lo).num_seconds().max(0) + 1))
        } else {
            created + Duration::seconds(rng.below_i64((latest - created).num_seconds().max(0) + 1))
        };
        facts.push(Facts { id, created, modified });
    }

    // "Mass updates": batches of 50–300 deals that share one Modified_Time second, half of them
    // in the last 24 h. Paging on Modified_Time alone with a strict `>` loses these ties.
    let batches = (total / 700).max(1);
    for b in 0..batches {
        let back = if b % 2 == 0 { rng.range(1, DAY_SECS - 1) } else { rng.range(DAY_SECS, HORIZON_SECS / 2) };
        let t = now - Duration::seconds(back);
        let size = 50 + rng.index(251);
        for _ in 0..size.min(total) {
            let k = rng.index(total);
            if facts[k].created <= t {
                facts[k].modified = t;
            }
        }
    }
    facts
}

/// [`History::Skewed`]: five years of history, growing toward now (the density of creations rises e^8-fold over
/// the five years: about 40% of the organic deals fall in the last 120 days, 80% in the last year); a migration
/// that created 20% of the deals within six hours, three years ago, most of them never touched since; organic
/// deals are last modified days to weeks after creation; about 1% of all deals were modified in the last day (half
/// of them old deals touched again, half created in the last days). Ids grow
/// with creation time, as Zoho's do.
fn skewed_facts(rng: &mut Rng, total: usize, now: DateTime<Utc>) -> Vec<Facts> {
    const HISTORY_SECS: f64 = 5.0 * 365.0 * DAY_SECS as f64;
    const GROWTH: f64 = 8.0;
    const MIGRATION_SHARE: f64 = 0.2;
    const MIGRATION_SECS: i64 = 6 * 3600;
    let migration = now - Duration::days(3 * 365);
    let latest = now - Duration::seconds(1);
    let mut created: Vec<DateTime<Utc>> = (0..total)
        .map(|_| {
            if rng.chance(MIGRATION_SHARE) {
                migration + Duration::seconds(rng.range(0, MIGRATION_SECS))
            } else {
                // Inverse CDF of a density growing like e^(GROWTH·t) over the history: `age` in (0, 1].
                let age = 1.0 - (1.0 + rng.unit() * (GROWTH.exp() - 1.0)).ln() / GROWTH;
                now - Duration::seconds((age * HISTORY_SECS) as i64 + 2)
            }
        })
        .collect();
    created.sort_unstable();
    let mut id = DEALS_BASE;
    created
        .into_iter()
        .map(|created| {
            id += rng.range_u64(1, 2500);
            let migrated = created >= migration && created <= migration + Duration::seconds(MIGRATION_SECS);
            let span = (latest - created).num_seconds().max(0);
            let modified = if rng.chance(0.005) {
                // touched in the last day (tonight's changes)
                let lo = created.max(now - Duration::seconds(DAY_SECS));
                lo + Duration::seconds(rng.below_i64((latest - lo).num_seconds().max(0) + 1))
            } else if migrated && rng.chance(0.85) {
                created
            } else {
                // worked on for days to weeks after creation (exponential, mean ten days); a recent deal whose
                // draw lands in the future was last touched any time since it was created
                let after = (-(1.0 - rng.unit()).ln() * 10.0 * DAY_SECS as f64) as i64;
                created + Duration::seconds(if after <= span { after } else { rng.range(0, span) })
            };
            Facts { id, created, modified: modified.min(latest) }
        })
        .collect()
}

impl Store {
    /// Generates `config.deals` live deals (plus the initially deleted ones) as of `now`, in the default org.
    pub fn generate(
        deals: usize,
        initially_deleted: Option<usize>,
        seed: u64,
        tz: FixedOffset,
        now: DateTime<Utc>,
    ) -> Store {
        Self::generate_profile(Profile::Default, deals, initially_deleted, seed, tz, now)
    }

    /// [`Store::generate`] for an org of `profile`. Every profile draws the same base deals from the seed (the
    /// default org's records are unchanged by the profiles' existence); a profile then reshapes each record
    /// with its own random stream: removes the fields its org lacks, moves deals into other pipelines, fills
    /// custom fields.
    pub fn generate_profile(
        profile: Profile,
        deals: usize,
        initially_deleted: Option<usize>,
        seed: u64,
        tz: FixedOffset,
        now: DateTime<Utc>,
    ) -> Store {
        Self::generate_history(profile, History::Uniform, deals, initially_deleted, seed, tz, now)
    }

    /// [`Store::generate_profile`] with the deals spread over time as `history` says (see [`History`]).
    pub fn generate_history(
        profile: Profile,
        history: History,
        deals: usize,
        initially_deleted: Option<usize>,
        seed: u64,
        tz: FixedOffset,
        now: DateTime<Utc>,
    ) -> Store {
        let mut rng = Rng::new(seed);
        let mut shape_rng = Rng::new(seed ^ 0x0005_4A9E_0F0E_6A11);
        let users = users();
        let accounts = accounts(&mut rng);
        let contacts = contacts(&mut rng);
        let n_deleted = initially_deleted.unwrap_or(deals / 100);
        let total = deals + n_deleted;
        let mut store = Store {
            org: Org::new(profile),
            tz,
            deals: BTreeMap::new(),
            by_modified: BTreeMap::new(),
            modified_of: HashMap::new(),
            deleted: Vec::new(),
            user_idx: users.iter().enumerate().map(|(i, u)| (u.id, i)).collect(),
            account_idx: accounts.iter().enumerate().map(|(i, a)| (a.id, i)).collect(),
            contact_idx: contacts.iter().enumerate().map(|(i, c)| (c.id, i)).collect(),
            users,
            accounts,
            contacts,
            next_id: DEALS_BASE,
            rng: Rng::new(seed ^ 0x5EED_0F3A_7A00),
            added_fields: Vec::new(),
            next_auto_number: 1,
            stage_changes: HashMap::new(),
        };

        let facts = match history {
            History::Uniform => uniform_facts(&mut rng, total, now),
            History::Skewed => skewed_facts(&mut rng, total, now),
        };
        store.next_id = facts.last().map_or(DEALS_BASE, |f| f.id);
        let latest = now - Duration::seconds(1);

        let deleted_at: HashSet<usize> = {
            let mut s = HashSet::new();
            while s.len() < n_deleted.min(total) {
                s.insert(rng.index(total));
            }
            s
        };
        for (k, fact) in facts.iter().enumerate() {
            let mut deal = store.build_deal(&mut rng, fact);
            store.shape(&mut deal, &mut shape_rng);
            if deleted_at.contains(&k) {
                let after = (now - fact.modified).num_seconds().max(1);
                let deleted_time = fact.modified + Duration::seconds(rng.range(1, after - 1).max(1));
                store.deleted.push(Deleted {
                    id: fact.id,
                    deleted_time: deleted_time.min(latest),
                    kind: if rng.chance(0.8) { "recycle" } else { "permanent" },
                    display_name: deal.get("Deal_Name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    deleted_by: rng.index(store.users.len()),
                    created_by: 0,
                });
            } else {
                store.deals.insert(fact.id, deal);
            }
        }
        store.deleted.sort_by_key(|d| (d.deleted_time, d.id));
        let ids: Vec<u64> = store.deals.keys().copied().collect();
        store.reindex(ids);
        store
    }

    /// Live deals by id, each the full Zoho JSON record.
    pub fn deals(&self) -> &BTreeMap<u64, Map<String, Value>> {
        &self.deals
    }

    /// The live deals whose `Modified_Time` lies within `lo`..`hi`, as `(Modified_Time, id)` in that order, with
    /// each one's `Stage` (iterate it backwards for descending order).
    pub fn modified_between(
        &self,
        lo: Bound<DateTime<Utc>>,
        hi: Bound<DateTime<Utc>>,
    ) -> impl DoubleEndedIterator<Item = (&(DateTime<Utc>, u64), Option<&str>)> + '_ {
        let lo = match lo {
            Bound::Included(t) => Bound::Included((t, u64::MIN)),
            Bound::Excluded(t) => Bound::Excluded((t, u64::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let hi = match hi {
            Bound::Included(t) => Bound::Included((t, u64::MAX)),
            Bound::Excluded(t) => Bound::Excluded((t, u64::MIN)),
            Bound::Unbounded => Bound::Unbounded,
        };
        // `range` panics on an inverted range; an empty window is simply empty.
        let empty = match (&lo, &hi) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_))))
            }
            _ => false,
        };
        let (lo, hi) =
            if empty { (Bound::Unbounded, Bound::Excluded((DateTime::<Utc>::MIN_UTC, 0))) } else { (lo, hi) };
        self.by_modified.range((lo, hi)).map(|(k, stage)| (k, stage.as_deref()))
    }

    /// Brings the `Modified_Time` index in step with `ids`' records (live, changed or gone).
    fn reindex(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            if let Some(old) = self.modified_of.remove(&id) {
                self.by_modified.remove(&(old, id));
            }
            let Some(m) = self.deals.get(&id) else { continue };
            if let Some(t) = Store::modified_time(m) {
                let stage = m.get("Stage").and_then(Value::as_str).map(Box::from);
                self.by_modified.insert((t, id), stage);
                self.modified_of.insert(id, t);
            }
        }
    }

    fn build_deal(&self, rng: &mut Rng, fact: &Facts) -> Map<String, Value> {
        let tz = self.tz;
        let r = rng.unit();
        let stage = if r < 0.25 {
            &STAGES[6]
        } else if r < 0.35 {
            &STAGES[7]
        } else if r < 0.47 {
            &STAGES[8]
        } else if r < 0.53 {
            &STAGES[9]
        } else {
            &STAGES[rng.index(6)]
        };
        // Reps may override the stage's default probability, so 100 is not a reliable "won" test.
        let probability =
            if stage.category == Category::ClosedWon && rng.chance(0.05) { 95 } else { i64::from(stage.probability) };
        let amount = if rng.chance(0.04) {
            None
        } else if rng.chance(0.3) {
            Some(rng.range(1, 5000) * 10_000)
        } else {
            Some(rng.range(10_000, 50_000_000))
        };
        let account = if rng.chance(0.9) { Some(&self.accounts[rng.index(self.accounts.len())]) } else { None };
        let contact = if rng.chance(0.7) { Some(&self.contacts[rng.index(self.contacts.len())]) } else { None };
        let name = if rng.chance(0.06) {
            AWKWARD_NAMES[rng.index(AWKWARD_NAMES.len())].to_string()
        } else {
            let who = account
                .map(|a| a.name.clone())
                .or_else(|| contact.map(Contact::full_name))
                .unwrap_or_else(|| "Walk-in".to_string());
            format!("{who} - {}", PRODUCTS[rng.index(PRODUCTS.len())])
        };
        let (currency, rate, symbol) = match rng.index(20) {
            0..=11 => CURRENCIES[0],
            12..=16 => CURRENCIES[1],
            17..=18 => CURRENCIES[2],
            _ => CURRENCIES[3],
        };
        // A JSON number with the digits as written (serde_json's arbitrary precision keeps them).
        let rate: Value = serde_json::from_str(rate).unwrap_or(Value::Null);
        let closed = stage.category != Category::Open;
        let closing = if closed {
            (fact.modified.with_timezone(&tz) - Duration::days(rng.range(0, 3))).date_naive()
        } else {
            (fact.created.with_timezone(&tz) + Duration::days(rng.range(10, 120))).date_naive()
        };
        let owner = &self.users[rng.index(self.users.len())];
        let creator = if rng.chance(0.5) { owner } else { &self.users[0] };
        let modifier = &self.users[rng.index(self.users.len())];
        let cycle_days = (closing - fact.created.with_timezone(&tz).date_naive()).num_days().max(0);
        let region =
            if rng.chance(0.85) { json!(meta::picklist_values("Region__c")[rng.index(4)]) } else { Value::Null };
        let term = if rng.chance(0.7) { json!([12, 24, 36][rng.index(3)]) } else { Value::Null };
        let renewal =
            if closed && rng.chance(0.6) { json!(fmt_date(closing + Duration::days(365))) } else { Value::Null };
        let description = match rng.index(5) {
            0 | 1 => Value::Null,
            2 => json!("Customer asked for a\nmulti-line quote — see \"Terms\" §4.\r\nThanks!"),
            _ => json!(format!("Follow-up with {}", owner.first_name)),
        };
        let tag =
            if rng.chance(0.1) { json!([{"name": "VIP", "id": (ID_BASE + 7_001).to_string()}]) } else { json!([]) };
        let lead_sources = meta::picklist_values("Lead_Source");
        let mut m = Map::new();
        m.insert("id".into(), json!(fact.id.to_string()));
        m.insert("Deal_Name".into(), json!(name));
        m.insert("Amount".into(), amount.map(money).unwrap_or(Value::Null));
        m.insert("Stage".into(), json!(stage.actual));
        m.insert("Pipeline".into(), json!("Standard (Standard)"));
        m.insert("Closing_Date".into(), json!(fmt_date(closing)));
        m.insert("Probability".into(), json!(probability));
        m.insert("Expected_Revenue".into(), amount.map(|c| money((c * probability + 50) / 100)).unwrap_or(Value::Null));
        m.insert("Currency".into(), json!(currency));
        m.insert("Exchange_Rate".into(), rate);
        m.insert(
            "Account_Name".into(),
            account.map(|a| json!({"name": a.name, "id": a.id.to_string()})).unwrap_or(Value::Null),
        );
        m.insert(
            "Contact_Name".into(),
            contact.map(|c| json!({"name": c.full_name(), "id": c.id.to_string()})).unwrap_or(Value::Null),
        );
        m.insert("Campaign_Source".into(), Value::Null);
        m.insert("Owner".into(), owner.minified());
        m.insert("Created_By".into(), creator.minified());
        m.insert("Modified_By".into(), modifier.minified());
        m.insert(
            "Lead_Source".into(),
            if rng.chance(0.8) { json!(lead_sources[rng.index(lead_sources.len())]) } else { Value::Null },
        );
        m.insert(
            "Type".into(),
            match rng.index(3) {
                0 => json!("New Business"),
                1 => json!("Existing Business"),
                _ => Value::Null,
            },
        );
        m.insert("Next_Step".into(), if closed { Value::Null } else { json!("Send revised quote") });
        m.insert("Created_Time".into(), json!(fmt_datetime(fact.created, tz)));
        m.insert("Modified_Time".into(), json!(fmt_datetime(fact.modified, tz)));
        m.insert("Last_Activity_Time".into(), json!(fmt_datetime(fact.modified, tz)));
        m.insert("Change_Log_Time__s".into(), json!(fmt_datetime(fact.modified, tz)));
        m.insert("Lead_Conversion_Time".into(), Value::Null);
        m.insert("Sales_Cycle_Duration".into(), if closed { json!(cycle_days) } else { Value::Null });
        m.insert("Overall_Sales_Duration".into(), if closed { json!(cycle_days) } else { Value::Null });
        m.insert(
            "Reason_For_Loss__s".into(),
            if stage.category == Category::ClosedLost {
                json!(meta::picklist_values("Reason_For_Loss__s")[rng.index(4)])
            } else {
                Value::Null
            },
        );
        m.insert("Record_Status__s".into(), json!("Available"));
        m.insert("Locked__s".into(), json!(false));
        m.insert("Tag".into(), tag);
        m.insert("Description".into(), description);
        m.insert("Region__c".into(), region);
        m.insert("Contract_Term_Months__c".into(), term);
        m.insert("Renewal_Date__c".into(), renewal);
        // `$` system keys (docs/zoho-api.md §5.1): present on every record, meaningless to the job.
        m.insert("$currency_symbol".into(), json!(symbol));
        m.insert("$approved".into(), json!(true));
        m.insert("$editable".into(), json!(true));
        m.insert("$review_process".into(), json!({"approve": false, "reject": false, "resubmit": false}));
        m.insert("$review".into(), Value::Null);
        m.insert(
            "$approval".into(),
            json!({"delegate": false, "takeover": false, "approve": false, "reject": false, "resubmit": false}),
        );
        m.insert("$process_flow".into(), json!(false));
        m.insert("$state".into(), json!("save"));
        m.insert("$in_merge".into(), json!(false));
        m.insert("$approval_state".into(), json!("approved"));
        m.insert("$orchestration".into(), json!(false));
        m.insert("$converted".into(), json!(false));
        m.insert("$locked_for_me".into(), json!(false));
        m.insert("$is_duplicate".into(), json!(false));
        m.insert("$pathfinder".into(), json!(false));
        m.insert("$followers".into(), Value::Null);
        m.insert("$sharing_permission".into(), json!("full_access"));
        m.insert("$layout_id".into(), json!({"name": "Standard", "id": LAYOUT_ID.to_string()}));
        m.insert("$field_states".into(), Value::Null);
        m
    }

    /// Reshapes a freshly built deal for the org's profile (see [`Store::generate_profile`]). The default
    /// profile changes nothing and draws nothing from `rng`.
    fn shape(&mut self, deal: &mut Map<String, Value>, rng: &mut Rng) {
        match self.org.profile {
            Profile::Default => {}
            Profile::Free => {
                // Fields a Free-edition org does not have are in no record either (docs/zoho-api.md §3f).
                for absent in ["Currency", "Exchange_Rate", "Pipeline"] {
                    deal.remove(absent);
                }
            }
            Profile::Pipelines => {
                if rng.chance(0.35) {
                    let category = self.org.category_of(deal);
                    let stage = match category {
                        Some(Category::ClosedWon) => self.org.won_stage_for(Some(PARTNER_PIPELINE), |p| rng.chance(p)),
                        Some(Category::ClosedLost) => STAGES[8],
                        _ => STAGES[if rng.chance(0.5) { 0 } else { 5 }],
                    };
                    deal.insert("Pipeline".into(), json!(PARTNER_PIPELINE));
                    deal.insert("Stage".into(), json!(stage.actual));
                    let p = i64::from(stage.probability);
                    deal.insert("Probability".into(), json!(p));
                    let expected = deal.get("Amount").and_then(cents_of).map(|c| money((c * p + 50) / 100));
                    deal.insert("Expected_Revenue".into(), expected.unwrap_or(Value::Null));
                } else {
                    deal.insert("Pipeline".into(), json!(STANDARD_PIPELINE));
                }
            }
            Profile::Exotic => {
                let now = Self::modified_time(deal).unwrap_or_else(crate::clock::now);
                let defs: Vec<FieldDef> = self.org.fields.iter().filter(|f| f.custom && !f.hidden).copied().collect();
                for def in defs {
                    if meta::DEAL_FIELDS.iter().any(|d| d.api_name == def.api_name) {
                        continue; // the default org's own custom fields are already filled
                    }
                    let v = match def.ftype {
                        FieldType::AutoNumber => {
                            let n = self.next_auto_number;
                            self.next_auto_number += 1;
                            json!(format!("DL-{n:05}"))
                        }
                        _ => self.custom_value(&def, rng, now),
                    };
                    deal.insert(def.api_name.into(), v);
                }
                self.recompute_formulas(deal);
            }
        }
    }

    /// A won stage for deal `id`, in its pipeline.
    fn won_stage_for(&mut self, id: u64) -> meta::Stage {
        let pipeline = self.deals.get(&id).and_then(|m| m.get("Pipeline")).and_then(Value::as_str).map(str::to_string);
        let rng = &mut self.rng;
        self.org.won_stage_for(pipeline.as_deref(), |p| rng.chance(p))
    }

    /// A plausible value of a custom field, in the JSON shape Zoho uses for its type (about one in seven
    /// empty: `null`, or `[]` for the array types, or `false` for a boolean).
    fn custom_value(&self, def: &FieldDef, rng: &mut Rng, now: DateTime<Utc>) -> Value {
        let tz = self.tz;
        let empty = rng.chance(0.15);
        let sub_id = |rng: &mut Rng| json!((ID_BASE + 600_000 + rng.below(99_999)).to_string());
        match def.ftype {
            FieldType::Boolean => json!(!empty && rng.chance(0.4)),
            FieldType::MultiPicklist if empty => json!([]),
            FieldType::Subform if empty => json!([]),
            _ if empty => Value::Null,
            FieldType::Text | FieldType::Tags => match def.api_name {
                "External" => json!(["Yes", "No", "Via partner"][rng.index(3)]),
                _ => json!(format!("P-{:04} O'Neil & Co", rng.below(10_000))),
            },
            FieldType::TextArea => json!("Line one — \"quoted\"\nline two, with a comma; and 'apostrophes'"),
            FieldType::Email => json!(format!("billing{}@customer.example", rng.below(1000))),
            FieldType::Phone => json!(format!("+91 98450 {:05}", rng.below(100_000))),
            FieldType::Url => json!(format!("https://contracts.example/deal/{}?v=2&lang=de", rng.below(100_000))),
            FieldType::Picklist => {
                let vals = meta::picklist_values(def.api_name);
                if vals.is_empty() {
                    Value::Null
                } else {
                    json!(vals[rng.index(vals.len())])
                }
            }
            FieldType::MultiPicklist => {
                let vals = meta::picklist_values(def.api_name);
                let mut picked: Vec<&str> = Vec::new();
                for _ in 0..rng.range(1, 3) {
                    let v = vals.get(rng.index(vals.len().max(1))).copied().unwrap_or("Other");
                    if !picked.contains(&v) {
                        picked.push(v);
                    }
                }
                json!(picked)
            }
            FieldType::Integer => json!(rng.range(1, 500)),
            // Beyond 2^53: exact only as text (see `FieldType::BigInt`).
            FieldType::BigInt => json!((9_007_199_254_740_993_u64 + rng.below(1_000_000)).to_string()),
            FieldType::Currency => money(rng.range(100, 10_000_000)),
            FieldType::Double => match def.places {
                Some(places) => exact_decimal(rng, places),
                None => json!((rng.range(0, 10_000) as f64) / 100.0),
            },
            FieldType::Percent => json!(rng.range(0, 100)),
            FieldType::RollupSummary => json!(rng.range(0, 40)),
            FieldType::Date => {
                json!(fmt_date((now - Duration::days(rng.range(-90, 400))).with_timezone(&tz).date_naive()))
            }
            FieldType::DateTime => json!(fmt_datetime(now - Duration::seconds(rng.range(0, 90 * DAY_SECS)), tz)),
            FieldType::Lookup(_) => {
                let a = &self.accounts[rng.index(self.accounts.len())];
                json!({"name": a.name, "id": a.id.to_string()})
            }
            FieldType::UserLookup | FieldType::OwnerLookup => {
                let u = &self.users[rng.index(self.users.len())];
                json!({"name": u.full_name(), "id": u.id.to_string()})
            }
            FieldType::AutoNumber => json!(format!("DL-{:05}", rng.below(100_000))),
            FieldType::Formula(_) => Value::Null,
            FieldType::MultiSelectLookup => {
                let n = rng.range(1, 3);
                let items: Vec<Value> = (0..n)
                    .map(|i| json!({def.api_name: {"name": format!("Product {}", i + 1), "id": sub_id(rng)}, "id": sub_id(rng)}))
                    .collect();
                json!(items)
            }
            FieldType::FileUpload => json!([{
                "File_Name__s": "signed contract (final).pdf", "Size__s": "48213", "File_Id__s": format!("f{}", rng.hex(8)),
                "Attachment_Id": sub_id(rng), "id": sub_id(rng),
            }]),
            FieldType::ImageUpload => json!([{
                "File_Name__s": "logo.png", "Size__s": "10240", "Preview_Id__s": format!("p{}", rng.hex(8)),
                "File_Id__s": format!("f{}", rng.hex(8)), "Description__s": null, "id": sub_id(rng),
            }]),
            FieldType::Subform => {
                let n = rng.range(1, 3);
                let rows: Vec<Value> = (0..n)
                    .map(|i| json!({"Product_Name": format!("Item {}", i + 1), "Quantity": rng.range(1, 20), "Unit_Price": money(rng.range(1000, 500_000)), "id": sub_id(rng)}))
                    .collect();
                json!(rows)
            }
        }
    }

    /// Recomputes the exotic profile's formula fields from the record, as Zoho does whenever a record is saved.
    fn recompute_formulas(&self, m: &mut Map<String, Value>) {
        let formulas: Vec<(&'static str, FormulaType)> = self
            .org
            .fields
            .iter()
            .filter_map(|f| match f.ftype {
                FieldType::Formula(t) => Some((f.api_name, t)),
                _ => None,
            })
            .collect();
        if formulas.is_empty() {
            return;
        }
        let num = |k: &str| m.get(k).and_then(Value::as_f64);
        let round2 = |x: f64| {
            serde_json::Number::from_f64((x * 100.0).round() / 100.0).map(Value::Number).unwrap_or(Value::Null)
        };
        let amount = num("Amount");
        let closing = m.get("Closing_Date").and_then(Value::as_str).and_then(crate::clock::parse_date);
        let created = m
            .get("Created_Time")
            .and_then(Value::as_str)
            .and_then(parse_datetime)
            .map(|t| t.with_timezone(&self.tz).date_naive());
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        for (name, _) in formulas {
            let v = match name {
                "Net_Amount_F" => {
                    amount.map_or(Value::Null, |a| round2(a * (1.0 - num("Discount_Decimal").unwrap_or(0.0) / 100.0)))
                }
                "Margin_Pct_F" => match (num("Margin_Double"), amount) {
                    (Some(mg), Some(a)) if a != 0.0 => round2(mg / a * 100.0),
                    _ => Value::Null,
                },
                "Days_To_Close_F" => match (closing, created) {
                    (Some(c), Some(cr)) => json!((c - cr).num_days()),
                    _ => Value::Null,
                },
                "Amount_Band_F" => match amount {
                    Some(a) if a >= 100_000.0 => json!("Large"),
                    Some(a) if a >= 10_000.0 => json!("Medium"),
                    Some(_) => json!("Small"),
                    None => Value::Null,
                },
                "Is_Large_F" => json!(amount.is_some_and(|a| a >= 100_000.0)),
                "Renewal_Due_F" => closing.map_or(Value::Null, |c| json!(fmt_date(c + Duration::days(365)))),
                "Weighted_Seats_F" => match (num("Seats"), num("Probability")) {
                    (Some(s), Some(p)) => round2(s * p / 100.0),
                    _ => Value::Null,
                },
                _ => Value::Null,
            };
            out.push((name, v));
        }
        for (k, v) in out {
            m.insert(k.into(), v);
        }
    }

    /// `GET /crm/v8/org`: the one organization, shaped like Zoho's Organization API sample and the
    /// official SDK's `org.Org` model.
    ///
    /// Fidelity fix (found by `make fidelity`): the official SDK, when it mints a token with
    /// `find_user=True` (its default), calls `users?type=CurrentUser` and then `/crm/v8/org` for the
    /// org's `zgid` (SDK `util/utility.py: get_user_org_id`), and tags its stored token
    /// `email:zgid`. The sandbox answered that path as Get Records of a module "org"
    /// (`INVALID_MODULE`), so the SDK logged an error and stored an untagged token. docs/zoho-api.md
    /// §4 names this endpoint (`org[0].license_details.paid_type`, scope `ZohoCRM.org.READ`).
    pub fn org_json(&self) -> Value {
        let admin = &self.users[0];
        json!({"org": [{
            "id": (ID_BASE + 1).to_string(),
            "company_name": "Zylker Sandbox",
            "alias": null,
            "primary_email": admin.email,
            "primary_zuid": "60012071",
            "zgid": "60012955",
            "domain_name": "org-sandbox",
            "time_zone": time_zone_name(self.tz),
            "currency": "US Dollar",
            "currency_symbol": "$",
            "iso_code": "USD",
            "currency_locale": "en_US",
            // Multi-currency: not available in the Free edition (docs/zoho-api.md §3f).
            "mc_status": self.org.profile != Profile::Free,
            "country": null, "country_code": "US", "city": null, "state": null, "street": null, "zip": null,
            "phone": null, "mobile": null, "fax": null, "website": null, "description": null,
            "employee_count": "50",
            "photo_id": null,
            "gapps_enabled": false,
            "translation_enabled": false,
            "privacy_settings": false,
            "zia_portal_id": null,
            // Zoho's sample shows "enterprise"; a Free-edition org says "free" (see `Org::paid_type`).
            "license_details": {
                "paid": self.org.profile != Profile::Free, "paid_type": self.org.paid_type(), "paid_expiry": null,
                "users_license_purchased": self.users.len(), "trial_type": null, "trial_expiry": null,
            },
        }]})
    }

    /// The user with this id.
    pub fn user(&self, id: u64) -> Option<&User> {
        self.user_idx.get(&id).map(|&i| &self.users[i])
    }

    /// The related record's field for a COQL dot-join (`Owner.email`), or null.
    pub fn join_value(&self, module: Module, id: u64, field: &str) -> Value {
        match module {
            Module::Users => match self.user(id) {
                Some(u) => match field {
                    "id" => json!(u.id.to_string()),
                    "first_name" => json!(u.first_name),
                    "last_name" => json!(u.last_name),
                    "full_name" => json!(u.full_name()),
                    "email" => json!(u.email),
                    _ => Value::Null,
                },
                None => Value::Null,
            },
            Module::Accounts => match self.account_idx.get(&id).map(|&i| &self.accounts[i]) {
                Some(a) => match field {
                    "id" => json!(a.id.to_string()),
                    "Account_Name" => json!(a.name),
                    "Industry" => json!(a.industry),
                    "Website" => json!(a.website),
                    "Billing_City" => json!(a.city),
                    "Billing_Country" => json!(a.country),
                    _ => Value::Null,
                },
                None => Value::Null,
            },
            Module::Contacts => match self.contact_idx.get(&id).map(|&i| &self.contacts[i]) {
                Some(c) => match field {
                    "id" => json!(c.id.to_string()),
                    "First_Name" => json!(c.first_name),
                    "Last_Name" => json!(c.last_name),
                    "Full_Name" => json!(c.full_name()),
                    "Email" => json!(c.email),
                    _ => Value::Null,
                },
                None => Value::Null,
            },
            Module::Campaigns => Value::Null,
        }
    }

    /// The deleted-records API entry for one deletion.
    pub fn deleted_json(&self, d: &Deleted) -> Value {
        let creator = self.users.get(d.created_by).map(|u| json!({"name": u.full_name(), "id": u.id.to_string()}));
        let deleter = self.users.get(d.deleted_by).map(|u| json!({"name": u.full_name(), "id": u.id.to_string()}));
        // Purged entries carry no names (docs/zoho-api.md §3e).
        let permanent = d.kind == "permanent";
        json!({
            "deleted_by": if permanent { Value::Null } else { deleter.unwrap_or(Value::Null) },
            "id": d.id.to_string(),
            "display_name": if permanent { Value::Null } else { json!(d.display_name) },
            "type": d.kind,
            "created_by": if permanent { Value::Null } else { creator.unwrap_or(Value::Null) },
            "deleted_time": fmt_datetime(d.deleted_time, self.tz),
        })
    }

    /// `GET /__sandbox/truth`, serialized straight from the store (no copy of the deals: with 100k
    /// deals the body alone is ~180 MB).
    pub fn truth_bytes(&self, now: DateTime<Utc>) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Truth<'a> {
            now: String,
            profile: &'static str,
            won_stages: Vec<&'static str>,
            hidden_fields: Vec<&'static str>,
            deals: Vec<&'a Map<String, Value>>,
            deleted: Vec<Value>,
        }
        let deleted = self
            .deleted
            .iter()
            .map(|d| json!({"id": d.id.to_string(), "deleted_time": fmt_datetime(d.deleted_time, self.tz), "type": d.kind}))
            .collect();
        serde_json::to_vec(&Truth {
            now: fmt_datetime(now, self.tz),
            profile: self.org.profile.as_str(),
            won_stages: self.org.won_stages(),
            hidden_fields: self.org.hidden_fields(),
            deals: self.deals.values().collect(),
            deleted,
        })
    }

    fn ids_where(&self, pred: impl Fn(Category) -> bool, exclude: &HashSet<u64>) -> Vec<u64> {
        self.deals
            .iter()
            .filter(|(id, m)| !exclude.contains(id) && self.org.category_of(m).is_some_and(&pred))
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick(&mut self, mut pool: Vec<u64>, n: usize) -> Vec<u64> {
        // partial Fisher–Yates: deterministic for a given seed and call sequence
        let n = n.min(pool.len());
        for i in 0..n {
            let j = i + self.rng.index(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(n);
        pool.sort_unstable();
        pool
    }

    fn touch(&mut self, id: u64, now: DateTime<Utc>) {
        let tz = self.tz;
        let modifier = self.users[self.rng.index(self.users.len())].minified();
        if let Some(m) = self.deals.get_mut(&id) {
            let t = json!(fmt_datetime(now, tz));
            m.insert("Modified_Time".into(), t.clone());
            m.insert("Last_Activity_Time".into(), t.clone());
            m.insert("Change_Log_Time__s".into(), t);
            m.insert("Modified_By".into(), modifier);
        }
        self.fill_added_fields(id, now);
        if let Some(mut m) = self.deals.remove(&id) {
            self.recompute_formulas(&mut m);
            self.deals.insert(id, m);
        }
    }

    /// Gives a record modified after a field was added at run time a value for it (as if a user filled it in).
    fn fill_added_fields(&mut self, id: u64, now: DateTime<Utc>) {
        let added = self.added_fields.clone();
        if added.is_empty() {
            return;
        }
        let mut rng = self.rng.clone();
        let values: Vec<(&'static str, Value)> =
            added.iter().map(|def| (def.api_name, self.custom_value(def, &mut rng, now))).collect();
        self.rng = rng;
        if let Some(m) = self.deals.get_mut(&id) {
            for (k, v) in values {
                m.insert(k.into(), v);
            }
        }
    }

    /// `POST /__sandbox/add-field`: a new custom Deals field, visible from now on; records get a value for it
    /// when they are next modified (a real org's existing records stay empty until someone edits them).
    pub fn add_field(&mut self, api_name: &str, label: &str, ftype: FieldType) -> Result<Value, String> {
        let def = self.org.add_field(api_name, label, ftype)?;
        self.added_fields.push(def);
        let fields = self.org.fields_json("Deals").unwrap_or(Value::Null);
        let found = fields["fields"].as_array().and_then(|a| a.iter().find(|f| f["api_name"] == def.api_name)).cloned();
        Ok(found.unwrap_or(Value::Null))
    }

    fn set_stage(&mut self, id: u64, stage: &meta::Stage, now: DateTime<Utc>) {
        // Zoho's stage history gets a row for every change (issue #11): keep it in step.
        let mut history = self.stage_changes_of(id);
        history.push((stage.actual.to_string(), now));
        self.stage_changes.insert(id, history);
        let today = now.with_timezone(&self.tz).date_naive();
        if let Some(m) = self.deals.get_mut(&id) {
            let p = i64::from(stage.probability);
            m.insert("Stage".into(), json!(stage.actual));
            m.insert("Probability".into(), json!(p));
            let expected = m.get("Amount").and_then(cents_of).map(|c| money((c * p + 50) / 100)).unwrap_or(Value::Null);
            m.insert("Expected_Revenue".into(), expected);
            if stage.category != Category::Open {
                m.insert("Closing_Date".into(), json!(fmt_date(today)));
            }
        }
    }

    /// Applies `POST /__sandbox/mutate`: every touched record gets `Modified_Time = now`.
    pub fn mutate(&mut self, req: &MutationRequest, now: DateTime<Utc>) -> MutationResult {
        let mut touched = HashSet::new();
        let mut out = MutationResult { modified_time: fmt_datetime(now, self.tz), ..MutationResult::default() };
        let won = |c: Category| c == Category::ClosedWon;

        let only: HashSet<u64> = req.only.iter().filter_map(|s| s.parse().ok()).collect();
        let restrict = |mut pool: Vec<u64>| {
            if !req.only.is_empty() {
                pool.retain(|id| only.contains(id));
            }
            pool
        };
        let pool = restrict(self.ids_where(|c| c == Category::Open, &touched));
        for id in self.pick(pool, req.win) {
            let stage = self.won_stage_for(id);
            self.set_stage(id, &stage, now);
            self.touch(id, now);
            touched.insert(id);
            out.win.push(id.to_string());
        }

        let pool = restrict(self.ids_where(won, &touched));
        for id in self.pick(pool, req.unwin) {
            self.set_stage(id, &STAGES[5], now);
            self.touch(id, now);
            touched.insert(id);
            out.unwin.push(id.to_string());
        }

        let pool = restrict(self.ids_where(won, &touched));
        for id in self.pick(pool, req.edit) {
            let bump = self.rng.range(1, 99_999);
            let tz = self.tz;
            if let Some(m) = self.deals.get_mut(&id) {
                let cents = m.get("Amount").and_then(cents_of).unwrap_or(0) + bump;
                let p = m.get("Probability").and_then(Value::as_i64).unwrap_or(100);
                m.insert("Amount".into(), money(cents));
                m.insert("Expected_Revenue".into(), money((cents * p + 50) / 100));
                let name = m.get("Deal_Name").and_then(Value::as_str).unwrap_or_default();
                let name = format!("{name} (rev {})", fmt_datetime(now, tz));
                m.insert("Deal_Name".into(), json!(name));
            }
            self.touch(id, now);
            touched.insert(id);
            out.edit.push(id.to_string());
        }

        let pool = restrict(self.ids_where(won, &touched));
        for id in self.pick(pool, req.delete) {
            if let Some(m) = self.deals.remove(&id) {
                let created_by = m
                    .get("Created_By")
                    .and_then(|v| v.get("id"))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .and_then(|uid| self.user_idx.get(&uid).copied())
                    .unwrap_or(0);
                self.deleted.push(Deleted {
                    id,
                    deleted_time: now,
                    kind: "recycle",
                    display_name: m.get("Deal_Name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    deleted_by: self.rng.index(self.users.len()),
                    created_by,
                });
                touched.insert(id);
                out.delete.push(id.to_string());
            }
        }

        let pool = restrict(self.ids_where(won, &touched));
        for (i, id) in self.pick(pool, req.corrupt).into_iter().enumerate() {
            if let Some(m) = self.deals.get_mut(&id) {
                let (field, bad) = match i % 3 {
                    0 => ("Amount", json!("twelve thousand")),
                    1 => ("Closing_Date", json!("2026-02-30")),
                    _ => ("Probability", json!("very likely")),
                };
                m.insert(field.into(), bad);
            }
            self.touch(id, now);
            touched.insert(id);
            out.corrupt.push(id.to_string());
        }

        let has_misfit_field = self.org.fields.iter().any(|f| f.api_name == MISFIT_FIELD);
        let pool = if has_misfit_field { restrict(self.ids_where(won, &touched)) } else { Vec::new() };
        for id in self.pick(pool, req.misfit) {
            if let Some(m) = self.deals.get_mut(&id) {
                m.insert(MISFIT_FIELD.into(), json!(MISFIT_VALUE));
            }
            self.touch(id, now);
            touched.insert(id);
            out.misfit.push(id.to_string());
        }
        let misfits: Vec<u64> = self
            .deals
            .iter()
            .filter(|(_, m)| m.get(MISFIT_FIELD) == Some(&json!(MISFIT_VALUE)))
            .map(|(id, _)| *id)
            .collect();
        let pool = restrict(misfits.into_iter().filter(|id| !touched.contains(id)).collect());
        for id in self.pick(pool, req.refit) {
            if let Some(m) = self.deals.get_mut(&id) {
                m.insert(MISFIT_FIELD.into(), json!("9007199254740993"));
            }
            self.touch(id, now);
            touched.insert(id);
            out.refit.push(id.to_string());
        }

        let has_decimal_field = self.org.fields.iter().any(|f| f.api_name == MISFIT_DECIMAL_FIELD);
        let pool = if has_decimal_field { restrict(self.ids_where(won, &touched)) } else { Vec::new() };
        for id in self.pick(pool, req.misfit_decimal) {
            if let Some(m) = self.deals.get_mut(&id) {
                m.insert(MISFIT_DECIMAL_FIELD.into(), json!(1e40));
            }
            self.touch(id, now);
            touched.insert(id);
            out.misfit_decimal.push(id.to_string());
        }

        for _ in 0..req.create_won {
            self.next_id += self.rng.range_u64(1, 2500);
            let id = self.next_id;
            let facts = Facts { id, created: now, modified: now };
            let mut rng = self.rng.clone();
            let mut deal = self.build_deal(&mut rng, &facts);
            self.shape(&mut deal, &mut rng);
            self.rng = rng;
            deal.insert("Modified_By".into(), self.users[0].minified());
            self.deals.insert(id, deal);
            let stage = self.won_stage_for(id);
            self.set_stage(id, &stage, now);
            self.fill_added_fields(id, now);
            if let Some(mut m) = self.deals.remove(&id) {
                self.recompute_formulas(&mut m);
                self.deals.insert(id, m);
            }
            touched.insert(id);
            out.create_won.push(id.to_string());
        }
        self.reindex(touched);
        out
    }

    /// A deal's stage changes, oldest first: those made since the sandbox started, or else two synthesized from
    /// the generated record (its first open stage at `Created_Time`, then its stage at `Modified_Time`: the
    /// generator's last edit is the one that set the stage).
    fn stage_changes_of(&self, id: u64) -> Vec<(String, DateTime<Utc>)> {
        if let Some(h) = self.stage_changes.get(&id) {
            return h.clone();
        }
        let Some(m) = self.deals.get(&id) else { return Vec::new() };
        let time = |k: &str| m.get(k).and_then(Value::as_str).and_then(parse_datetime);
        let (Some(created), Some(modified)) = (time("Created_Time"), time("Modified_Time")) else { return Vec::new() };
        let first = STAGES[0].actual.to_string();
        let mut out = vec![(first.clone(), created)];
        match m.get("Stage").and_then(Value::as_str) {
            Some(stage) if stage != first => out.push((stage.to_string(), modified)),
            _ => {}
        }
        out
    }

    /// `GET /crm/v8/Deals/{id}/Stage_History` (docs/zoho-api.md §5.6): one row per stage change, newest first,
    /// with the stage entered (`Stage`), when (`Modified_Time`), who, the deal's money at that time and how many
    /// days it stayed (`Duration_Days`, empty for the current stage). `None` when the deal does not exist.
    pub fn stage_history_json(&self, id: u64, page: usize, per_page: usize) -> Option<Value> {
        let m = self.deals.get(&id)?;
        let history = self.stage_changes_of(id);
        let tz = self.tz;
        let mut rows: Vec<Value> = history
            .iter()
            .enumerate()
            .map(|(i, (stage, at))| {
                let days = history.get(i + 1).map(|(_, next)| (*next - *at).num_days());
                json!({
                    "id": (ID_BASE + 900_000_000 + id % 1_000_000 * 100 + i as u64).to_string(),
                    "Stage": stage,
                    "Modified_Time": fmt_datetime(*at, tz),
                    "Modified_By": self.users[0].minified(),
                    "Amount": m.get("Amount").cloned().unwrap_or(Value::Null),
                    "Probability": m.get("Probability").cloned().unwrap_or(Value::Null),
                    "Expected_Revenue": m.get("Expected_Revenue").cloned().unwrap_or(Value::Null),
                    "Closing_Date": m.get("Closing_Date").cloned().unwrap_or(Value::Null),
                    "Duration_Days": days,
                    "Moved_To__s": Value::Null,
                })
            })
            .collect();
        rows.reverse();
        let start = page.saturating_sub(1) * per_page;
        let more = rows.len() > start + per_page;
        let data: Vec<Value> = rows.into_iter().skip(start).take(per_page).collect();
        if data.is_empty() {
            return Some(Value::Null);
        }
        let count = data.len();
        Some(json!({"data": data, "info": {"per_page": per_page, "count": count, "page": page, "more_records": more}}))
    }

    /// `GET /crm/v8/org/currencies`: the org's currencies, or `None` in an org without multi-currency (Free).
    pub fn currencies_json(&self) -> Option<Value> {
        if self.org.profile == Profile::Free {
            return None;
        }
        let admin = self.users[0].minified();
        let list: Vec<Value> = CURRENCIES
            .iter()
            .enumerate()
            .map(|(i, (iso, rate, symbol))| {
                // Zoho sends rates as text with 9 decimals ("1.000000000").
                let rate =
                    format!("{rate}{}", ".000000000".get(rate.find('.').map_or(0, |p| rate.len() - p)..).unwrap_or(""));
                json!({
                    "id": (ID_BASE + 8_200 + i as u64).to_string(),
                    "iso_code": iso,
                    "symbol": symbol,
                    "name": iso,
                    "is_base": i == 0,
                    "is_active": true,
                    "exchange_rate": rate,
                    "prefix_symbol": true,
                    "format": {"decimal_separator": "Period", "thousand_separator": "Comma", "decimal_places": "2"},
                    "created_by": admin, "modified_by": admin,
                    "created_time": "2025-01-06T09:00:00+00:00", "modified_time": "2025-01-06T09:00:00+00:00",
                })
            })
            .collect();
        Some(json!({"currencies": list}))
    }

    /// A deal's Modified_Time as an instant.
    pub fn modified_time(m: &Map<String, Value>) -> Option<DateTime<Utc>> {
        m.get("Modified_Time").and_then(Value::as_str).and_then(parse_datetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn store(n: usize, seed: u64) -> (Store, DateTime<Utc>) {
        let now = clock::now();
        let tz = clock::offset(330).expect("offset");
        (Store::generate(n, None, seed, tz, now), now)
    }

    #[test]
    fn the_exotic_orgs_twelve_place_decimal_renders_every_place_in_its_json() {
        let now = clock::now();
        let tz = clock::offset(330).expect("offset");
        let s = Store::generate_profile(Profile::Exotic, 300, None, 7, tz, now);
        let values: Vec<String> = s
            .deals
            .values()
            .filter_map(|m| m.get("Unit_Rate"))
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect();
        assert!(values.len() > 200, "most deals carry one: {}", values.len());
        for text in &values {
            let (whole, places) = text.split_once('.').unwrap_or_else(|| panic!("{text} has a point"));
            assert!(!whole.is_empty() && whole.len() <= 3 && !whole.starts_with('0'), "{text}");
            assert_eq!(places.len(), crate::org::UNIT_RATE_PLACES as usize, "{text}");
            assert!(!places.ends_with('0') && places.bytes().all(|b| b.is_ascii_digit()), "{text}");
        }
        let misfit = json!(1e40).to_string();
        assert!(misfit == "1e40" || misfit == "1e+40", "10^40 stays a number beyond BIGNUMERIC: {misfit}");
    }

    #[test]
    fn generation_is_deterministic_and_has_the_promised_shape() {
        let (a, now) = store(3000, 42);
        let b = Store::generate(3000, None, 42, a.tz, now);
        assert_eq!(a.deals, b.deals);
        assert_eq!(a.deals.len(), 3000);
        assert_eq!(a.deleted.len(), 30);

        let won =
            a.deals.values().filter(|m| m["Stage"] == "Closed Won" || m["Stage"] == "Closed Won - Renewal").count();
        let share = won as f64 / 3000.0;
        assert!((0.28..0.42).contains(&share), "won share {share}");
        assert!(a.deals.values().any(|m| m["Stage"] == "Closed Won - Renewal"));

        let day_ago = now - Duration::days(1);
        let mut recent = 0;
        let mut per_second: HashMap<String, usize> = HashMap::new();
        for m in a.deals.values() {
            let id = m["id"].as_str().expect("id string");
            assert_eq!(id.len(), 19);
            let created = parse_datetime(m["Created_Time"].as_str().expect("ct")).expect("parse");
            let modified = Store::modified_time(m).expect("mt");
            assert!(created <= modified && modified < now);
            assert!(m["Modified_Time"].as_str().expect("mt").ends_with("+05:30"));
            if modified > day_ago {
                recent += 1;
            }
            *per_second.entry(m["Modified_Time"].to_string()).or_default() += 1;
        }
        assert!(recent * 10 >= 3000 * 3, "recent {recent}");
        assert!(per_second.values().any(|&n| n >= 40), "no mass-update second");
        assert!(a.deals.values().any(|m| m["Amount"].is_null()));
        assert!(a.deals.values().any(|m| m["Deal_Name"].as_str().is_some_and(|s| s.contains('\''))));
    }

    #[test]
    fn mutations_touch_what_they_say() {
        let (mut s, _) = store(500, 3);
        let now = clock::now();
        let r = s.mutate(
            &MutationRequest { win: 3, unwin: 2, delete: 2, edit: 2, create_won: 2, ..MutationRequest::default() },
            now,
        );
        assert_eq!((r.win.len(), r.unwin.len(), r.delete.len(), r.edit.len(), r.create_won.len()), (3, 2, 2, 2, 2));
        let ts = fmt_datetime(now, s.tz);
        for id in r.win.iter().chain(&r.create_won) {
            let m = &s.deals[&id.parse::<u64>().expect("id")];
            assert!(s.org.won_stages().contains(&m["Stage"].as_str().expect("stage")));
            assert_eq!(m["Modified_Time"], ts.as_str());
        }
        for id in &r.delete {
            let id: u64 = id.parse().expect("id");
            assert!(!s.deals.contains_key(&id));
            assert!(s.deleted.iter().any(|d| d.id == id && d.deleted_time == now));
        }
        let max_before = r.create_won[0].parse::<u64>().expect("id");
        assert!(s.deals.keys().filter(|k| **k > max_before).count() >= 1);
    }
}
