//! Real orgs come in shapes: the profile of the sandbox's org decides which Deals fields exist (and which the
//! API user may see), the Stage pick list, the pipelines and their stage maps, and the edition's limits.
//!
//! - `default`: the sandbox's original org (Enterprise, one pipeline, multi-currency, three custom fields).
//! - `free`: a Free-edition org: no `Currency`, `Exchange_Rate` or `Pipeline` field, no pipeline settings,
//!   5,000 credits a day and 5 concurrent calls (docs/zoho-api.md §3f, §4).
//! - `pipelines`: a second pipeline whose won stages exist only there; their top-level Stage entries carry no
//!   forecast type, and one has an apostrophe in its name (docs/zoho-api.md §3f, §5.3).
//! - `exotic`: 60+ Deals fields, custom fields of every type including those COQL cannot select, seven
//!   formula fields, fields named after reserved words and fields hidden from the API user (§3c, §3f).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::meta::{
    self, custom, forecast_category_json, hidden, module_id, stage_id, Category, FieldDef, FieldType, FormulaType,
    Module, Stage, DEAL_FIELDS, ID_BASE, PIPELINE_ID, STAGES,
};

/// The shape of the sandbox's org.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The original sandbox org; `make demo` uses it.
    #[default]
    Default,
    /// A Free-edition org without multi-currency or pipelines.
    Free,
    /// Two pipelines, with won stages only the second one maps.
    Pipelines,
    /// Many custom fields of every type.
    Exotic,
}

impl Profile {
    /// Parses `default`, `free`, `pipelines` or `exotic`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Some(Profile::Default),
            "free" => Some(Profile::Free),
            "pipelines" => Some(Profile::Pipelines),
            "exotic" => Some(Profile::Exotic),
            _ => None,
        }
    }

    /// The profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Free => "free",
            Profile::Pipelines => "pipelines",
            Profile::Exotic => "exotic",
        }
    }

    /// The edition's daily credits and concurrency (docs/zoho-api.md §4), when the org's edition implies them.
    pub fn edition_limits(self) -> Option<(u64, usize)> {
        match self {
            Profile::Free => Some((5_000, 5)),
            _ => None,
        }
    }
}

/// A pipeline and the stages it maps, each with the category this pipeline gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Its name (`Standard`).
    pub name: &'static str,
    /// What records carry in `Pipeline` (`Standard (Standard)`: pipeline and layout).
    pub record_value: &'static str,
    /// Its id.
    pub id: u64,
    /// The layout's default pipeline.
    pub default: bool,
    /// Its stages.
    pub stages: Vec<Stage>,
}

/// Won stages of the second pipeline of the `pipelines` profile. Neither is in the Standard pipeline, and
/// their entries in the top-level Stage pick list carry no forecast type or deal category: whether Zoho
/// fills those for a stage only a secondary pipeline uses is UNCONFIRMED (docs/zoho-api.md §3f), so the
/// sandbox takes the harder case, which only a client reading the pipelines' maps survives.
pub const PARTNER_WON: Stage =
    Stage { display: "Partner Won", actual: "Partner Won", probability: 100, category: Category::ClosedWon };
/// The apostrophe one (an en dash too), which a client must quote right in COQL.
pub const PARTNER_WON_APOSTROPHE: Stage =
    Stage {
        display: "Won – Partner's", actual: "Won – Partner's", probability: 100, category: Category::ClosedWon
    };
/// What records of the second pipeline carry in `Pipeline`.
pub const PARTNER_PIPELINE: &str = "Partner Channel (Standard)";
/// What records of the Standard pipeline carry in `Pipeline`.
pub const STANDARD_PIPELINE: &str = "Standard (Standard)";

/// The extra Deals fields of the `exotic` profile: every custom type, the unsupported ones, 7 formulas,
/// two reserved-word API names and two fields hidden from the API user.
pub const EXOTIC_FIELDS: &[FieldDef] = &[
    custom("Partner_Code", "Partner Code", FieldType::Text),
    custom("Internal_Notes", "Internal Notes", FieldType::TextArea),
    custom("Billing_Email", "Billing Email", FieldType::Email),
    custom("Billing_Phone", "Billing Phone", FieldType::Phone),
    custom("Contract_URL", "Contract URL", FieldType::Url),
    custom("Deal_Region", "Deal Region", FieldType::Picklist),
    custom("Languages_Known", "Languages Known", FieldType::MultiPicklist),
    custom("Seats", "Seats", FieldType::Integer),
    custom("Account_Number_Long", "Account Number (Long)", FieldType::BigInt),
    custom("List_Price", "List Price", FieldType::Currency),
    custom("Discount_Decimal", "Discount (Decimal)", FieldType::Double),
    custom("Margin_Double", "Margin", FieldType::Double),
    custom("Win_Probability_Pct", "Win Probability", FieldType::Percent),
    custom("Is_Strategic", "Strategic", FieldType::Boolean),
    custom("Go_Live_Date", "Go-Live Date", FieldType::Date),
    custom("Kickoff_At", "Kick-off At", FieldType::DateTime),
    custom("Partner_Account", "Partner Account", FieldType::Lookup(Module::Accounts)),
    custom("Technical_Owner", "Technical Owner", FieldType::UserLookup),
    custom("Net_Amount_F", "Net Amount", FieldType::Formula(FormulaType::Double)),
    custom("Margin_Pct_F", "Margin %", FieldType::Formula(FormulaType::Double)),
    custom("Days_To_Close_F", "Days To Close", FieldType::Formula(FormulaType::Double)),
    custom("Amount_Band_F", "Amount Band", FieldType::Formula(FormulaType::Text)),
    custom("Is_Large_F", "Large Deal", FieldType::Formula(FormulaType::Boolean)),
    custom("Renewal_Due_F", "Renewal Due", FieldType::Formula(FormulaType::Date)),
    custom("Weighted_Seats_F", "Weighted Seats", FieldType::Formula(FormulaType::Double)),
    custom("Deal_Number", "Deal Number", FieldType::AutoNumber),
    custom("Open_Tasks_Rollup", "Open Tasks", FieldType::RollupSummary),
    custom("Related_Products", "Related Products", FieldType::MultiSelectLookup),
    custom("Signed_Contract", "Signed Contract", FieldType::FileUpload),
    custom("Logo", "Logo", FieldType::ImageUpload),
    custom("Line_Items", "Line Items", FieldType::Subform),
    // API names that are SQL reserved words: COQL needs them quoted (Kaizen #171, docs/zoho-api.md §3c).
    custom("External", "External", FieldType::Text),
    custom("Order", "Order", FieldType::Integer),
    // A decimal field of 12 places (Zoho's decimal fields are `double`): more than BigQuery's NUMERIC keeps (9),
    // so a client that reads `decimal_place` types it BIGNUMERIC (docs/zoho-api.md §8).
    custom("Unit_Rate", "Unit Rate", FieldType::Double).with_places(UNIT_RATE_PLACES),
    hidden("Commission_Rate", "Commission Rate", FieldType::Percent),
    hidden("Cost_Basis", "Cost Basis", FieldType::Currency),
];

/// `decimal_place` of the exotic profile's `Unit_Rate`.
pub const UNIT_RATE_PLACES: u32 = 12;

/// Fields a Free-edition org lacks (docs/zoho-api.md §3f).
const FREE_ABSENT: &[&str] = &["Currency", "Exchange_Rate", "Pipeline"];

/// One org's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Org {
    /// Its shape.
    pub profile: Profile,
    /// Every Deals field, visible or hidden, in `settings/fields` order.
    pub fields: Vec<FieldDef>,
    /// The top-level Stage pick list, in order (ids follow this order).
    pub stages: Vec<Stage>,
    /// Actual values whose top-level Stage entry carries no forecast type (only a pipeline's map gives it).
    pub uncategorised: Vec<&'static str>,
    /// The pipelines of the one layout (empty when the pipeline feature is off).
    pub pipelines: Vec<Pipeline>,
}

impl Org {
    /// The org of `profile`.
    pub fn new(profile: Profile) -> Org {
        let standard = Pipeline {
            name: "Standard",
            record_value: STANDARD_PIPELINE,
            id: PIPELINE_ID,
            default: true,
            stages: STAGES.to_vec(),
        };
        let mut fields = DEAL_FIELDS.to_vec();
        let mut stages = STAGES.to_vec();
        let mut uncategorised = Vec::new();
        let mut pipelines = vec![standard];
        match profile {
            Profile::Default => {}
            Profile::Free => {
                fields.retain(|f| !FREE_ABSENT.contains(&f.api_name));
                pipelines.clear();
            }
            Profile::Pipelines => {
                stages.push(PARTNER_WON);
                stages.push(PARTNER_WON_APOSTROPHE);
                uncategorised = vec![PARTNER_WON.actual, PARTNER_WON_APOSTROPHE.actual];
                pipelines.push(Pipeline {
                    name: "Partner Channel",
                    record_value: PARTNER_PIPELINE,
                    id: PIPELINE_ID + 1,
                    default: false,
                    stages: vec![STAGES[0], STAGES[5], PARTNER_WON, PARTNER_WON_APOSTROPHE, STAGES[8]],
                });
            }
            Profile::Exotic => fields.extend_from_slice(EXOTIC_FIELDS),
        }
        Org { profile, fields, stages, uncategorised, pipelines }
    }

    /// A field the API user can see, by API name (exact, case-sensitive, as Zoho's API names are).
    pub fn field(&self, api_name: &str) -> Option<FieldDef> {
        self.fields.iter().find(|f| f.api_name == api_name && !f.hidden).copied()
    }

    /// Fields hidden from the API user.
    pub fn hidden_fields(&self) -> Vec<&'static str> {
        self.fields.iter().filter(|f| f.hidden).map(|f| f.api_name).collect()
    }

    /// Whether the org has the pipeline feature.
    pub fn has_pipelines(&self) -> bool {
        !self.pipelines.is_empty()
    }

    /// The stage `actual` as the pipeline `pipeline` (a record's `Pipeline` value, if any) maps it, else as
    /// the top-level pick list has it.
    pub fn stage(&self, actual: &str, pipeline: Option<&str>) -> Option<Stage> {
        let mapped = self
            .pipelines
            .iter()
            .filter(|p| pipeline.is_none_or(|v| v == p.record_value))
            .find_map(|p| p.stages.iter().find(|s| s.actual == actual));
        mapped.or_else(|| self.stages.iter().find(|s| s.actual == actual)).copied()
    }

    /// The category of a record's stage (in its pipeline).
    pub fn category_of(&self, rec: &Map<String, Value>) -> Option<Category> {
        let actual = rec.get("Stage").and_then(Value::as_str)?;
        self.stage(actual, rec.get("Pipeline").and_then(Value::as_str)).map(|s| s.category)
    }

    /// Every won stage's actual value: the top-level pick list's and every pipeline's (the union a client
    /// must build, docs/zoho-api.md §3f).
    pub fn won_stages(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let all = self.stages.iter().chain(self.pipelines.iter().flat_map(|p| p.stages.iter()));
        for s in all.filter(|s| s.category == Category::ClosedWon) {
            if !out.contains(&s.actual) {
                out.push(s.actual);
            }
        }
        out
    }

    /// The pipeline of a record's `Pipeline` value (the default one when absent).
    fn pipeline_of(&self, value: Option<&str>) -> Option<&Pipeline> {
        match value {
            Some(v) => self.pipelines.iter().find(|p| p.record_value == v),
            None => self.pipelines.iter().find(|p| p.default),
        }
    }

    /// A won stage for a deal in pipeline `value`, drawn with `chance` (called once per draw).
    pub fn won_stage_for(&self, value: Option<&str>, mut chance: impl FnMut(f64) -> bool) -> Stage {
        match self.pipeline_of(value) {
            Some(p) if !p.default => {
                if chance(0.5) {
                    PARTNER_WON
                } else {
                    PARTNER_WON_APOSTROPHE
                }
            }
            // The Standard pipeline (and orgs without pipelines): 70% "Closed Won", as ever.
            _ => {
                if chance(0.7) {
                    STAGES[6]
                } else {
                    STAGES[7]
                }
            }
        }
    }

    /// Adds a custom field at run time (`POST /__sandbox/add-field`); its API name must be new.
    ///
    /// The name and label are leaked to keep [`FieldDef`] `Copy` with `'static` names like the compiled-in
    /// tables: a test adds a handful of fields per sandbox, so the leak is bounded and small.
    pub fn add_field(&mut self, api_name: &str, label: &str, ftype: FieldType) -> Result<FieldDef, String> {
        let valid = api_name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && api_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("api_name `{api_name}` must be letters, digits and _ and start with a letter"));
        }
        if self.fields.iter().any(|f| f.api_name == api_name) || api_name == "id" {
            return Err(format!("a Deals field `{api_name}` already exists"));
        }
        let api_name: &'static str = Box::leak(api_name.to_string().into_boxed_str());
        let label: &'static str = Box::leak(label.to_string().into_boxed_str());
        let def = custom(api_name, label, ftype);
        self.fields.push(def);
        Ok(def)
    }

    /// The Stage field's `pick_list_values` (OAS `fields.json#pick_list_values`).
    pub fn stage_pick_list_json(&self) -> Value {
        let vals: Vec<Value> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (forecast_type, forecast_category) = if self.uncategorised.contains(&s.actual) {
                    (Value::Null, Value::Null)
                } else {
                    (json!(s.category.as_str()), forecast_category_json(s.category))
                };
                json!({
                    "display_value": s.display,
                    "actual_value": s.actual,
                    "reference_value": s.display,
                    "sys_ref_name": s.actual,
                    "sequence_number": i + 1,
                    "forecast_type": forecast_type,
                    "forecast_category": forecast_category,
                    "deal_category": forecast_type,
                    "probability": s.probability,
                    "colour_code": null,
                    "expected_data_type": null,
                    "id": self.stage_id(s.actual).to_string(),
                    "type": "used",
                })
            })
            .collect();
        Value::Array(vals)
    }

    fn stage_id(&self, actual: &str) -> u64 {
        stage_id(self.stages.iter().position(|s| s.actual == actual).unwrap_or(0))
    }

    fn maps_json(&self, p: &Pipeline) -> Vec<Value> {
        p.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "display_value": s.display,
                    "actual_value": s.actual,
                    "forecast_type": s.category.as_str(),
                    "forecast_category": forecast_category_json(s.category),
                    "sequence_number": i + 1,
                    "probability": s.probability,
                    "id": self.stage_id(s.actual).to_string(),
                    "colour_code": null,
                })
            })
            .collect()
    }

    /// `GET /settings/pipeline?layout_id=` (D-PIPE7 shape), or `None` when the pipeline feature is off.
    pub fn pipeline_json(&self) -> Option<Value> {
        if !self.has_pipelines() {
            return None;
        }
        let pipelines: Vec<Value> = self
            .pipelines
            .iter()
            .map(|p| {
                json!({
                    "display_value": p.name,
                    "actual_value": p.name,
                    "default": p.default,
                    "child_available": false,
                    "parent": null,
                    "id": p.id.to_string(),
                    "maps": self.maps_json(p),
                })
            })
            .collect();
        Some(json!({ "pipeline": pipelines }))
    }

    /// The `Pipeline` field's `pick_list_values`: one per pipeline, each with its stage `maps`.
    fn pipeline_pick_list_json(&self) -> Value {
        let vals: Vec<Value> = self
            .pipelines
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "display_value": p.record_value,
                    "actual_value": p.record_value,
                    "reference_value": p.name,
                    "sequence_number": i + 1,
                    "type": "used",
                    "id": p.id.to_string(),
                    "maps": self.maps_json(p),
                })
            })
            .collect();
        Value::Array(vals)
    }

    fn field_json(&self, i: usize, def: &FieldDef, id_space: u64) -> Value {
        let mut v = json!({
            "api_name": def.api_name,
            "field_label": def.label,
            "display_label": def.label,
            "data_type": def.ftype.data_type(),
            "json_type": def.ftype.json_type(),
            "custom_field": def.custom,
            "read_only": def.read_only,
            "visible": true,
            "system_mandatory": matches!(def.api_name, "Deal_Name" | "Stage" | "Closing_Date"),
            "id": (id_space + i as u64).to_string(),
            "length": match def.ftype { FieldType::TextArea => 32000, FieldType::Text => 255, _ => 16 },
        });
        let Value::Object(m) = &mut v else { return v };
        if let Some(places) = def.decimal_place() {
            m.insert("decimal_place".into(), json!(places));
        }
        match def.ftype {
            FieldType::Lookup(module) => {
                m.insert(
                    "lookup".into(),
                    json!({"module": {"api_name": module.api_name(), "id": module_id(module).to_string()}, "display_label": def.label, "api_name": def.api_name}),
                );
            }
            FieldType::OwnerLookup | FieldType::UserLookup => {
                m.insert(
                    "lookup".into(),
                    json!({"module": {"api_name": "users", "id": module_id(Module::Users).to_string()}}),
                );
            }
            FieldType::Picklist if def.api_name == "Stage" => {
                m.insert("pick_list_values".into(), self.stage_pick_list_json());
            }
            FieldType::Picklist if def.api_name == "Pipeline" => {
                m.insert("pick_list_values".into(), self.pipeline_pick_list_json());
            }
            FieldType::Picklist | FieldType::MultiPicklist => {
                let vals: Vec<Value> = meta::picklist_values(def.api_name)
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        json!({"display_value": p, "actual_value": p, "reference_value": p,
                               "sequence_number": j + 1, "type": "used",
                               "id": (id_space + 500 + (i as u64) * 20 + j as u64).to_string()})
                    })
                    .collect();
                m.insert("pick_list_values".into(), Value::Array(vals));
            }
            FieldType::Formula(rt) => {
                m.insert("formula".into(), json!({"return_type": rt.as_str(), "expression": null}));
            }
            FieldType::AutoNumber => {
                m.insert("auto_number".into(), json!({"prefix": "DL-", "suffix": null, "start_number": 1}));
            }
            FieldType::MultiSelectLookup => {
                m.insert(
                    "multiselectlookup".into(),
                    json!({"connected_module": {"api_name": "Products"}, "linking_module": {"api_name": "Deals_X_Products"}}),
                );
            }
            FieldType::Subform => {
                m.insert("subform".into(), json!({"module": {"api_name": "Line_Items"}}));
            }
            _ => {}
        }
        v
    }

    /// `GET /settings/fields?module=...` body (module case-insensitive), or `None` if unknown. Hidden
    /// fields are left out, as Zoho leaves out what the user's profile may not see (docs/zoho-api.md §3c).
    ///
    /// Deals is complete; Accounts, Contacts, Campaigns and users get a small plausible list because the
    /// official SDK asks for the fields of every module a Deals `lookup` field points to.
    ///
    /// Fidelity fix (found by `make fidelity`): Campaigns was missing. Deals' standard `Campaign_Source`
    /// is a lookup into Campaigns (docs/zoho-api.md §5.1), so the SDK (7.0.0, `Utility.set_data_type` →
    /// `get_fields_info`) fetches `/settings/fields?module=Campaigns` before parsing any Get Records
    /// page; a real org has that module, so `INVALID_MODULE` here was a sandbox-only answer.
    pub fn fields_json(&self, module: &str) -> Option<Value> {
        let lower = module.to_ascii_lowercase();
        let defs: Vec<FieldDef> = match lower.as_str() {
            "deals" => self.fields.clone(),
            "accounts" => meta::other_module_fields(Module::Accounts),
            "contacts" => meta::other_module_fields(Module::Contacts),
            "campaigns" => meta::other_module_fields(Module::Campaigns),
            "users" => meta::other_module_fields(Module::Users),
            _ => return None,
        };
        let id_space = ID_BASE
            + match lower.as_str() {
                "deals" => 94_000,
                "accounts" => 95_000,
                "contacts" => 96_000,
                "campaigns" => 98_000,
                _ => 97_000,
            };
        let fields: Vec<Value> =
            defs.iter().enumerate().filter(|(_, d)| !d.hidden).map(|(i, d)| self.field_json(i, d, id_space)).collect();
        Some(json!({ "fields": fields }))
    }

    /// `license_details.paid_type` of `GET /org`.
    pub fn paid_type(&self) -> &'static str {
        match self.profile {
            Profile::Free => "free",
            // Zoho's sample shows "enterprise" (20 concurrent calls, docs/zoho-api.md §4); a client sizing its
            // concurrency from this stays under the sandbox's default cap of 25.
            _ => "enterprise",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_org_finds_won_stages_by_forecast_type() {
        let org = Org::new(Profile::Default);
        assert_eq!(org.won_stages(), vec!["Closed Won", "Closed Won - Renewal"]);
        let pl = org.stage_pick_list_json();
        let lost = pl.as_array().expect("array").iter().filter(|v| v["forecast_type"] == "Closed Lost").count();
        assert_eq!(lost, 2);
        let names: Vec<String> = org.fields_json("Deals").expect("deals")["fields"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|f| f["api_name"].as_str().map(str::to_string))
            .collect();
        assert!(names.iter().any(|n| n == "Region__c") && names.iter().any(|n| n == "Stage"));
        assert!(org.fields_json("Nope").is_none());
        for def in &org.fields {
            if let FieldType::Lookup(m) = def.ftype {
                assert!(org.fields_json(m.api_name()).is_some(), "no fields for {}", m.api_name());
            }
        }
    }

    #[test]
    fn secondary_pipeline_won_stages_are_won_only_through_the_pipeline_maps() {
        let org = Org::new(Profile::Pipelines);
        assert_eq!(org.won_stages(), vec!["Closed Won", "Closed Won - Renewal", "Partner Won", "Won – Partner's"]);
        let pl = org.stage_pick_list_json();
        let entry =
            pl.as_array().expect("array").iter().find(|v| v["actual_value"] == "Won – Partner's").expect("entry");
        assert!(entry["forecast_type"].is_null() && entry["deal_category"].is_null());
        let pipes = org.pipeline_json().expect("pipelines");
        assert_eq!(pipes["pipeline"].as_array().map(Vec::len), Some(2));
        assert!(Org::new(Profile::Free).pipeline_json().is_none());
    }

    #[test]
    fn currency_fields_and_the_twelve_place_decimal_carry_decimal_place_and_other_numbers_do_not() {
        let org = Org::new(Profile::Exotic);
        let body = org.fields_json("Deals").expect("Deals");
        let meta = |api: &str| {
            body["fields"].as_array().into_iter().flatten().find(|f| f["api_name"] == api).cloned().expect(api)
        };
        assert_eq!(
            (meta("Unit_Rate")["decimal_place"].clone(), meta("Unit_Rate")["length"].clone()),
            (json!(12), json!(16))
        );
        assert_eq!(meta("Unit_Rate")["data_type"], "double");
        assert_eq!(meta("List_Price")["decimal_place"], 2);
        assert_eq!(meta("Amount")["decimal_place"], 2);
        // UNCONFIRMED which types carry it: the other number fields go without, so a client meets both shapes.
        assert!(meta("Margin_Double").get("decimal_place").is_none());
        assert!(meta("Win_Probability_Pct").get("decimal_place").is_none());
    }

    #[test]
    fn exotic_org_has_sixty_visible_fields_and_hides_two() {
        let org = Org::new(Profile::Exotic);
        let visible = org.fields.iter().filter(|f| !f.hidden).count();
        assert!(visible >= 60, "{visible}");
        assert_eq!(org.hidden_fields(), vec!["Commission_Rate", "Cost_Basis"]);
        assert!(org.field("Commission_Rate").is_none());
        let formulas = org.fields.iter().filter(|f| matches!(f.ftype, FieldType::Formula(_))).count();
        assert_eq!(formulas, 7);
    }
}
