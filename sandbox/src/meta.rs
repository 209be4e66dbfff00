//! The Deals module's metadata: field definitions, the Stage pick list, the pipeline and the layout.
//!
//! The building blocks: field types, the default org's field table and Stage pick list, plus the other
//! modules' small field lists. Which of them an org has is decided by its profile ([`crate::org::Org`]).

use serde_json::{json, Value};

/// Id prefix shared by every generated entity (Zoho ids are 19-digit strings with an org prefix).
pub const ID_BASE: u64 = 5_725_767_000_000_000_000;
/// The one Deals layout.
pub const LAYOUT_ID: u64 = ID_BASE + 91_055;
/// The one pipeline.
pub const PIPELINE_ID: u64 = ID_BASE + 91_060;

/// What a formula field returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormulaType {
    /// A number.
    Double,
    /// Text.
    Text,
    /// A date.
    Date,
    /// true/false.
    Boolean,
}

impl FormulaType {
    /// Zoho's `formula.return_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FormulaType::Double => "double",
            FormulaType::Text => "text",
            FormulaType::Date => "date",
            FormulaType::Boolean => "boolean",
        }
    }
}

/// A field's type, as far as the sandbox needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Single line text.
    Text,
    /// Multi-line text.
    TextArea,
    /// An email address (text).
    Email,
    /// A phone number (text).
    Phone,
    /// A URL (`website`).
    Url,
    /// Pick list (string values).
    Picklist,
    /// Multi-select pick list: a JSON array of strings.
    MultiPicklist,
    /// Money: a JSON number.
    Currency,
    /// A JSON number with decimals (Zoho's "decimal" fields are `double` too).
    Double,
    /// A percentage: a JSON number.
    Percent,
    /// A JSON integer.
    Integer,
    /// A long integer, sent as a string of digits (its JSON shape is UNCONFIRMED; a string keeps 19 digits exact).
    BigInt,
    /// `YYYY-MM-DD`.
    Date,
    /// ISO 8601 with offset.
    DateTime,
    /// true/false.
    Boolean,
    /// `{"name","id"}` lookup into another module.
    Lookup(Module),
    /// `{"name","id","email"}` lookup into Users.
    OwnerLookup,
    /// A custom user lookup: `{"name","id"}` into Users.
    UserLookup,
    /// The Tag array.
    Tags,
    /// Auto-number: a read-only string (`DL-00042`).
    AutoNumber,
    /// A formula, computed from other fields.
    Formula(FormulaType),
    /// Rollup summary: a read-only number.
    RollupSummary,
    /// Multi-select lookup (COQL cannot select it).
    MultiSelectLookup,
    /// File upload (COQL cannot select it).
    FileUpload,
    /// Image upload (COQL cannot select it).
    ImageUpload,
    /// Subform (COQL cannot select it).
    Subform,
}

impl FieldType {
    /// Zoho's `data_type` string.
    pub fn data_type(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::TextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "website",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multiselectpicklist",
            FieldType::Currency => "currency",
            FieldType::Double => "double",
            FieldType::Percent => "percent",
            FieldType::Integer => "integer",
            FieldType::BigInt => "bigint",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Boolean => "boolean",
            FieldType::Lookup(_) => "lookup",
            FieldType::OwnerLookup => "ownerlookup",
            FieldType::UserLookup => "userlookup",
            FieldType::Tags => "text",
            FieldType::AutoNumber => "autonumber",
            FieldType::Formula(_) => "formula",
            FieldType::RollupSummary => "rollup_summary",
            FieldType::MultiSelectLookup => "multiselectlookup",
            FieldType::FileUpload => "fileupload",
            FieldType::ImageUpload => "imageupload",
            FieldType::Subform => "subform",
        }
    }

    /// Zoho's `json_type` string.
    pub fn json_type(self) -> &'static str {
        match self {
            FieldType::Currency | FieldType::Double | FieldType::Percent | FieldType::RollupSummary => "double",
            FieldType::Formula(FormulaType::Double) => "double",
            FieldType::Formula(FormulaType::Boolean) => "boolean",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Lookup(_) | FieldType::OwnerLookup | FieldType::UserLookup => "jsonobject",
            FieldType::Tags
            | FieldType::MultiPicklist
            | FieldType::MultiSelectLookup
            | FieldType::FileUpload
            | FieldType::ImageUpload
            | FieldType::Subform => "jsonarray",
            _ => "string",
        }
    }

    /// A type COQL refuses to select or filter on (docs/zoho-api.md §3c, "Limitations").
    pub fn coql_unsupported(self) -> bool {
        matches!(
            self,
            FieldType::MultiSelectLookup | FieldType::FileUpload | FieldType::ImageUpload | FieldType::Subform
        )
    }

    /// The type named by a `data_type` string, for fields added at run time (`POST /__sandbox/add-field`);
    /// only types whose values need no other metadata.
    pub fn from_data_type(s: &str) -> Option<FieldType> {
        Some(match s {
            "text" => FieldType::Text,
            "textarea" => FieldType::TextArea,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "website" => FieldType::Url,
            "currency" => FieldType::Currency,
            "double" => FieldType::Double,
            "percent" => FieldType::Percent,
            "integer" => FieldType::Integer,
            "bigint" => FieldType::BigInt,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }
}

/// Modules that Deals' lookups point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// Accounts (Account_Name).
    Accounts,
    /// Contacts (Contact_Name).
    Contacts,
    /// Campaigns (Campaign_Source; always empty here).
    Campaigns,
    /// Users (Owner, Created_By, Modified_By).
    Users,
}

impl Module {
    /// The module's API name.
    pub fn api_name(self) -> &'static str {
        match self {
            Module::Accounts => "Accounts",
            Module::Contacts => "Contacts",
            Module::Campaigns => "Campaigns",
            Module::Users => "users",
        }
    }

    /// Fields reachable through a COQL dot-join (`Account_Name.Industry`), with their types.
    pub fn join_fields(self) -> &'static [(&'static str, FieldType)] {
        match self {
            Module::Accounts => &[
                ("id", FieldType::Text),
                ("Account_Name", FieldType::Text),
                ("Industry", FieldType::Picklist),
                ("Website", FieldType::Text),
                ("Billing_City", FieldType::Text),
                ("Billing_Country", FieldType::Text),
            ],
            Module::Contacts => &[
                ("id", FieldType::Text),
                ("First_Name", FieldType::Text),
                ("Last_Name", FieldType::Text),
                ("Full_Name", FieldType::Text),
                ("Email", FieldType::Text),
            ],
            Module::Campaigns => &[("id", FieldType::Text), ("Campaign_Name", FieldType::Text)],
            Module::Users => &[
                ("id", FieldType::Text),
                ("first_name", FieldType::Text),
                ("last_name", FieldType::Text),
                ("full_name", FieldType::Text),
                ("email", FieldType::Text),
            ],
        }
    }
}

/// One Deals field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDef {
    /// API name (what appears in record JSON and queries).
    pub api_name: &'static str,
    /// Label shown in the UI.
    pub label: &'static str,
    /// Type.
    pub ftype: FieldType,
    /// A custom field (API names come from labels; no suffix is guaranteed, docs/zoho-api.md §3f).
    pub custom: bool,
    /// Not editable through the API.
    pub read_only: bool,
    /// Hidden from the API user's profile: absent from `settings/fields`, unknown to COQL and Get Records,
    /// and never in a record the API sends.
    pub hidden: bool,
    /// The number field's `decimal_place` in the metadata, when it is set explicitly (see
    /// [`FieldDef::decimal_place`] for the default).
    pub places: Option<u32>,
}

impl FieldDef {
    /// The same field with `decimal_place` set to `places` (its values then have that many decimals).
    pub const fn with_places(self, places: u32) -> FieldDef {
        FieldDef { places: Some(places), ..self }
    }

    /// What the metadata says in `decimal_place`: a currency field's 2 unless set, a number field's own when
    /// set, and nothing otherwise. Which data types carry the key is UNCONFIRMED (docs/zoho-api.md §8): a
    /// third-party schema of Zoho's field API gives currency fields `decimalPlaces` (at most 9), so currency
    /// fields carry it, and other number fields only when a test needs it, so the job meets both shapes.
    pub fn decimal_place(&self) -> Option<u32> {
        match (self.places, self.ftype) {
            (Some(p), _) => Some(p),
            (None, FieldType::Currency) => Some(2),
            _ => None,
        }
    }
}

/// A standard field.
pub const fn f(api_name: &'static str, label: &'static str, ftype: FieldType) -> FieldDef {
    FieldDef { api_name, label, ftype, custom: false, read_only: false, hidden: false, places: None }
}

/// A read-only standard field.
pub const fn ro(api_name: &'static str, label: &'static str, ftype: FieldType) -> FieldDef {
    FieldDef { api_name, label, ftype, custom: false, read_only: true, hidden: false, places: None }
}

/// A custom field.
pub const fn custom(api_name: &'static str, label: &'static str, ftype: FieldType) -> FieldDef {
    let read_only = matches!(ftype, FieldType::Formula(_) | FieldType::AutoNumber | FieldType::RollupSummary);
    FieldDef { api_name, label, ftype, custom: true, read_only, hidden: false, places: None }
}

/// A custom field hidden from the API user's profile.
pub const fn hidden(api_name: &'static str, label: &'static str, ftype: FieldType) -> FieldDef {
    FieldDef { api_name, label, ftype, custom: true, read_only: false, hidden: true, places: None }
}

/// Every Deals field (docs/zoho-api.md §5.1 plus three custom fields). `id` is not a field in Zoho's metadata.
pub const DEAL_FIELDS: &[FieldDef] = &[
    f("Owner", "Deal Owner", FieldType::OwnerLookup),
    f("Amount", "Amount", FieldType::Currency),
    f("Deal_Name", "Deal Name", FieldType::Text),
    f("Closing_Date", "Closing Date", FieldType::Date),
    f("Account_Name", "Account Name", FieldType::Lookup(Module::Accounts)),
    f("Stage", "Stage", FieldType::Picklist),
    f("Type", "Type", FieldType::Picklist),
    f("Probability", "Probability (%)", FieldType::Integer),
    f("Next_Step", "Next Step", FieldType::Text),
    ro("Expected_Revenue", "Expected Revenue", FieldType::Currency),
    f("Lead_Source", "Lead Source", FieldType::Picklist),
    f("Campaign_Source", "Campaign Source", FieldType::Lookup(Module::Campaigns)),
    f("Contact_Name", "Contact Name", FieldType::Lookup(Module::Contacts)),
    f("Pipeline", "Pipeline", FieldType::Picklist),
    f("Currency", "Currency", FieldType::Picklist),
    f("Exchange_Rate", "Exchange Rate", FieldType::Double),
    ro("Created_By", "Created By", FieldType::OwnerLookup),
    ro("Modified_By", "Modified By", FieldType::OwnerLookup),
    ro("Created_Time", "Created Time", FieldType::DateTime),
    ro("Modified_Time", "Modified Time", FieldType::DateTime),
    ro("Last_Activity_Time", "Last Activity Time", FieldType::DateTime),
    ro("Change_Log_Time__s", "Change Log Time", FieldType::DateTime),
    ro("Lead_Conversion_Time", "Lead Conversion Time", FieldType::Integer),
    ro("Sales_Cycle_Duration", "Sales Cycle Duration", FieldType::Integer),
    ro("Overall_Sales_Duration", "Overall Sales Duration", FieldType::Integer),
    f("Reason_For_Loss__s", "Reason For Loss", FieldType::Picklist),
    ro("Record_Status__s", "Record Status", FieldType::Picklist),
    ro("Locked__s", "Locked", FieldType::Boolean),
    f("Tag", "Tag", FieldType::Tags),
    f("Description", "Description", FieldType::TextArea),
    custom("Region__c", "Region", FieldType::Picklist),
    custom("Contract_Term_Months__c", "Contract Term (Months)", FieldType::Integer),
    custom("Renewal_Date__c", "Renewal Date", FieldType::Date),
];

/// Deal category / forecast type of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Still open.
    Open,
    /// Won.
    ClosedWon,
    /// Lost.
    ClosedLost,
}

impl Category {
    /// Zoho's `forecast_type` / `deal_category` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Open => "Open",
            Category::ClosedWon => "Closed Won",
            Category::ClosedLost => "Closed Lost",
        }
    }

    /// Zoho's forecast category (`Pipeline` / `Closed` / `Omitted`) and a stable id for it.
    fn forecast_category(self) -> (&'static str, u64) {
        match self {
            Category::Open => ("Pipeline", ID_BASE + 91_001),
            Category::ClosedWon => ("Closed", ID_BASE + 91_002),
            Category::ClosedLost => ("Omitted", ID_BASE + 91_003),
        }
    }
}

/// One value of the Stage pick list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// What the UI shows.
    pub display: &'static str,
    /// What is stored (and what records carry: see [`STAGES`]).
    pub actual: &'static str,
    /// Default probability.
    pub probability: u8,
    /// Won / lost / open.
    pub category: Category,
}

const fn st(display: &'static str, actual: &'static str, probability: u8, category: Category) -> Stage {
    Stage { display, actual, probability, category }
}

/// The customised Stage pick list: a renamed won stage ("Won - Renewal" stored as "Closed Won - Renewal")
/// and two lost stages, so won-set discovery has to go by forecast type, not by name.
///
/// Records carry the `actual_value` in `Stage`. Which of the two Zoho puts in record JSON is
/// UNCONFIRMED (docs/zoho-api.md §5.3); the actual value is the documented-looking choice (it is what
/// "actual" means in the pick-list API), and a job matching on both is safe either way.
pub const STAGES: &[Stage] = &[
    st("Qualification", "Qualification", 10, Category::Open),
    st("Needs Analysis", "Needs Analysis", 20, Category::Open),
    st("Value Proposition", "Value Proposition", 40, Category::Open),
    st("Identify Decision Makers", "Id. Decision Makers", 60, Category::Open),
    st("Proposal/Price Quote", "Proposal/Price Quote", 75, Category::Open),
    st("Negotiation/Review", "Negotiation/Review", 90, Category::Open),
    st("Closed Won", "Closed Won", 100, Category::ClosedWon),
    st("Won - Renewal", "Closed Won - Renewal", 100, Category::ClosedWon),
    st("Closed Lost", "Closed Lost", 0, Category::ClosedLost),
    st("Closed-Lost to Competition", "Closed-Lost to Competition", 0, Category::ClosedLost),
];

/// Plain pick lists (other than Stage): field → values.
pub fn picklist_values(api_name: &str) -> &'static [&'static str] {
    match api_name {
        "Type" => &["New Business", "Existing Business"],
        "Lead_Source" => &[
            "Advertisement",
            "Cold Call",
            "Employee Referral",
            "External Referral",
            "Online Store",
            "Partner",
            "Public Relations",
            "Trade Show",
            "Web Download",
            "Web Research",
            "Chat",
        ],
        "Pipeline" => &["Standard (Standard)"],
        "Currency" => &["USD", "EUR", "INR"],
        "Reason_For_Loss__s" => &["Lost to Competitor", "Price", "No Budget", "No Decision"],
        "Record_Status__s" => &["Available", "Draft", "Trash"],
        "Region__c" => &["AMER", "EMEA", "APAC", "LATAM"],
        "Deal_Region" => &["North", "South", "East", "West", "Côte d'Azur"],
        "Languages_Known" => &["English", "Deutsch", "Français", "日本語", "Español"],
        _ => &[],
    }
}

/// The id of the `i`-th entry of the Stage pick list.
pub fn stage_id(i: usize) -> u64 {
    ID_BASE + 92_000 + i as u64
}

/// `{"name","id"}` of a category's forecast category.
pub fn forecast_category_json(c: Category) -> Value {
    let (name, id) = c.forecast_category();
    json!({"name": name, "id": id.to_string()})
}

/// The one Deals layout (`GET /settings/layouts?module=Deals`).
pub fn layouts_json() -> Value {
    json!({"layouts": [{
        "id": LAYOUT_ID.to_string(),
        "name": "Standard",
        "api_name": "Standard",
        "display_label": "Standard",
        "status": "active",
        "visible": true,
        "source": "crm",
        "profiles": [{"name": "Administrator", "id": (ID_BASE + 90_001).to_string(), "default": true}],
    }]})
}

/// The module id Deals' lookup metadata uses for `m` (`lookup.module.id`).
pub fn module_id(m: Module) -> u64 {
    ID_BASE + 93_000 + m as u64
}

/// `GET /settings/modules`: the modules this org has (Deals and those its lookups point to), shaped like
/// the official SDK's `modules.Modules` model.
///
/// Fidelity fix (found by `make fidelity`): with `SDKConfig(auto_refresh_fields=True)` the official SDK
/// (7.0.0, `Utility.get_modules`) lists the org's modules before its first record call and caches the
/// fields of every `api_supported` one; without this route every Get Records call through such a
/// client failed. Fact sheet §6 names the endpoint among the metadata calls clients make.
pub fn modules_json() -> Value {
    let entry = |api: &str, singular: &str, id: u64, seq: usize| {
        json!({
            "api_name": api, "module_name": api, "singular_label": singular, "plural_label": api,
            "id": id.to_string(), "sequence_number": seq, "generated_type": "default",
            "api_supported": true, "visible": true, "viewable": true, "creatable": true, "editable": true,
            "deletable": true, "convertable": false, "show_as_tab": true, "status": "visible",
            "global_search_supported": true, "quick_create": true, "modified_time": null, "modified_by": null,
        })
    };
    json!({"modules": [
        entry("Accounts", "Account", module_id(Module::Accounts), 1),
        entry("Contacts", "Contact", module_id(Module::Contacts), 2),
        entry("Deals", "Deal", ID_BASE + 93_010, 3),
        entry("Campaigns", "Campaign", module_id(Module::Campaigns), 4),
    ]})
}

/// The small field list of a module other than Deals.
pub fn other_module_fields(m: Module) -> Vec<FieldDef> {
    let mut out: Vec<FieldDef> =
        m.join_fields().iter().filter(|(name, _)| *name != "id").map(|(name, t)| f(name, name, *t)).collect();
    if m != Module::Users {
        out.push(f("Owner", "Owner", FieldType::OwnerLookup));
        out.push(ro("Created_Time", "Created Time", FieldType::DateTime));
        out.push(ro("Modified_Time", "Modified Time", FieldType::DateTime));
    }
    out
}
