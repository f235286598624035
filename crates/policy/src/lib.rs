//! Policy files: the rules that decide what the gateway allows, written by
//! trust-and-safety teams as YAML with CEL conditions, checked against the
//! documented input when they load, and evaluated per request.
//!
//! ```yaml
//! version: "2026-11-27"
//! params:
//!   minor_threshold: 0.3
//! rules:
//!   - id: minor-in-reference
//!     stage: pre
//!     scope: image
//!     when: image.faces.exists(f, f.p_minor >= params.minor_threshold && f.subject == null)
//!     action: block
//!     reason: consent.minor_without_guardian
//!     message: "{{ image.name }} shows someone who may be a child"
//! ```
//!
//! A core crate: no I/O. Callers read the folder into [`SourceFile`]s
//! ([`Policy::load`]), pass an [`Input`] and get an [`Evaluation`]: every
//! rule's result, and the outcome (the most severe enforced action).
//! A rule that cannot be evaluated makes the outcome an error: the caller
//! refuses the request, never skips the rule.

mod categories;
mod golden;
mod handle;
mod input;
mod schema;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use categories::{words, Categories, PUBLIC_FIGURE_NAMED};
pub use golden::{run_golden, GoldenCase, GoldenResult};
pub use handle::{Policies, Rejected, Status};
pub use input::{
    ConsentFacts, FaceFacts, GalleryMatchFacts, HistoryFacts, ImageFacts, Input, PromptFacts, RequestFacts, Stage,
    SubjectFacts,
};
pub use schema::{schema, Schema, Type};
use template::Template;

/// The ladder of outcomes, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Allow,
    Label,
    Review,
    Block,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "allow" => Action::Allow,
            "label" => Action::Label,
            "review" => Action::Review,
            "block" => Action::Block,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Label => "label",
            Action::Review => "review",
            Action::Block => "block",
        }
    }
}

/// Whether a rule's action is applied, or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// Whether a rule is evaluated once per request or once per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Request,
    /// Once for each image of the stage (references at `pre`, outputs at
    /// `post`), with the variable `image`; fires if any image makes it true.
    Image,
}

/// One file of the policy folder, as text. `path` is relative to the
/// folder: `default.yaml`, `tenants/acme.yaml`, `categories/sexual.txt`,
/// `tests/default.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// What is wrong with a policy, with the file, line and rule it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{file}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), rule.as_ref().map(|r| format!(": rule {r}")).unwrap_or_default())]
pub struct Problem {
    pub file: String,
    pub line: Option<u64>,
    pub rule: Option<String>,
    pub message: String,
}

/// How the operator lets tenants' overlays change the policy.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Tenants whose overlay may lower an action or turn an enforced rule to
    /// shadow, and set parameters.
    pub tenants_may_lower: BTreeSet<String>,
}

struct Rule {
    id: String,
    description: String,
    stage: Stage,
    scope: Scope,
    when: Program,
    when_source: String,
    action: Action,
    reason: String,
    message: Template,
    labels: Vec<String>,
    mode: Mode,
    file: String,
    line: Option<u64>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("version", &self.version).field("rules", &self.rule_ids()).finish()
    }
}

/// A tenant's rules and parameters: the base with its overlay applied.
struct TenantRules {
    rules: Vec<Arc<Rule>>,
    params: BTreeMap<String, f64>,
}

/// A loaded, checked policy. Immutable: a reload builds a new one.
pub struct Policy {
    version: String,
    params: BTreeMap<String, f64>,
    rules: Vec<Arc<Rule>>,
    /// Per tenant: the base with its overlay applied.
    tenants: BTreeMap<String, TenantRules>,
    categories: Categories,
    env: Arc<Env>,
}

/// A rule's result on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub id: String,
    pub stage: Stage,
    pub mode: Mode,
    pub action: Action,
    pub reason: String,
    pub fired: bool,
    /// What the end user is shown, when it fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The first image that made a rule of scope `image` fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why it could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every rule of one stage on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub version: String,
    pub stage: Stage,
    pub results: Vec<RuleResult>,
}

/// What an evaluation decides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The most severe action of the enforced rules that fired.
    pub action: Action,
    /// The first such rule's reason and message.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Labels of the enforced rules that fired.
    pub labels: Vec<String>,
    /// An enforced rule that could not be evaluated: the request must be
    /// refused (`policy.error`).
    pub failed: Option<(String, String)>,
}

impl Evaluation {
    pub fn fired(&self) -> impl Iterator<Item = &RuleResult> {
        self.results.iter().filter(|r| r.fired)
    }

    pub fn outcome(&self) -> Outcome {
        let mut out = Outcome::default();
        for r in self.results.iter().filter(|r| r.mode == Mode::Enforce) {
            if let Some(e) = &r.error {
                out.failed.get_or_insert((r.id.clone(), e.clone()));
                continue;
            }
            if !r.fired {
                continue;
            }
            for l in &r.labels {
                if !out.labels.contains(l) {
                    out.labels.push(l.clone());
                }
            }
            if r.action > out.action || out.reason.is_none() && r.action == out.action && r.action > Action::Allow {
                out.action = r.action;
                out.reason = Some(r.reason.clone());
                out.message = r.message.clone();
            }
        }
        out
    }
}

const BASE_FILE_SUFFIXES: [&str; 2] = [".yaml", ".yml"];

fn is_yaml(path: &str) -> bool {
    BASE_FILE_SUFFIXES.iter().any(|s| path.ends_with(s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// The authors' own label (a date, a number); the version decisions
    /// name is the content hash.
    #[serde(default)]
    version: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    params: BTreeMap<String, f64>,
    #[serde(default)]
    rules: Vec<serde_saphyr::Spanned<RuleFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    #[serde(default)]
    description: String,
    stage: String,
    #[serde(default)]
    scope: Option<String>,
    when: serde_saphyr::Spanned<String>,
    action: String,
    reason: String,
    message: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
}

fn problem(file: &str, line: Option<u64>, rule: Option<&str>, message: impl Into<String>) -> Problem {
    Problem { file: file.to_string(), line, rule: rule.map(String::from), message: message.into() }
}

fn line_of(l: &serde_saphyr::Location) -> Option<u64> {
    Some(l.line()).filter(|&n| n > 0)
}

/// A reason is a stable dotted code, e.g. `vision.public_figure`.
fn valid_reason(r: &str) -> bool {
    let mut parts = r.split('.');
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    parts.clone().count() >= 2 && parts.all(ok)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.')
}

impl Policy {
    /// Loads a policy folder's files: base rules in `*.yaml` at the top,
    /// tenant overlays in `tenants/<tenant>.yaml`, phrase lists in
    /// `categories/<name>.txt` (files under `tests/` are golden cases,
    /// not part of the policy). Every problem is reported, not only the first.
    pub fn load(files: &[SourceFile], options: &LoadOptions) -> Result<Policy, Vec<Problem>> {
        let env = Arc::new(Env::stdlib());
        let mut problems = Vec::new();
        let mut params = BTreeMap::new();
        let mut categories = Categories::default();
        let mut files: Vec<&SourceFile> = files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));

        for f in files.iter().filter(|f| f.path.starts_with("categories/")) {
            match f.path.strip_prefix("categories/").and_then(|n| n.strip_suffix(".txt")) {
                Some(name) if valid_id(name) && !name.contains('/') => categories.add(name, &f.text),
                _ => problems.push(problem(
                    &f.path,
                    None,
                    None,
                    "a category is categories/<name>.txt, name in a-z, 0-9, _ and -",
                )),
            }
        }
        let base: Vec<&&SourceFile> = files.iter().filter(|f| !f.path.contains('/') && is_yaml(&f.path)).collect();
        if base.is_empty() {
            problems.push(problem(".", None, None, "no policy file (*.yaml) in the folder"));
        }
        let mut drafts = Vec::new();
        for f in base {
            let Some(parsed) = parse_file(f, &mut problems) else { continue };
            if parsed.version.is_none() {
                problems.push(problem(&f.path, None, None, "`version` is missing"));
            }
            for (name, value) in parsed.params {
                if !value.is_finite() {
                    problems.push(problem(&f.path, None, None, format!("parameter {name} is not a number")));
                } else if params.insert(name.clone(), value).is_some() {
                    problems.push(problem(&f.path, None, None, format!("parameter {name} is declared twice")));
                }
            }
            drafts.extend(parsed.rules.into_iter().filter_map(|r| draft(&f.path, r, &mut problems)));
        }
        // Rules are compiled once every base parameter is known.
        let mut seen = BTreeSet::new();
        let mut rules: Vec<Arc<Rule>> = Vec::new();
        for d in drafts {
            if !seen.insert(d.raw.id.clone()) {
                problems.push(problem(&d.file, d.line, Some(&d.raw.id), "this id is used by another rule"));
                continue;
            }
            rules.extend(compile(d, &params, &env, &mut problems).map(Arc::new));
        }

        let mut tenants = BTreeMap::new();
        for f in files.iter().filter(|f| f.path.starts_with("tenants/")) {
            let Some(tenant) =
                f.path.strip_prefix("tenants/").and_then(|n| n.strip_suffix(".yaml").or(n.strip_suffix(".yml")))
            else {
                problems.push(problem(&f.path, None, None, "a tenant overlay is tenants/<tenant>.yaml"));
                continue;
            };
            let may_lower = options.tenants_may_lower.contains(tenant);
            let Some(parsed) = parse_file(f, &mut problems) else { continue };
            let mut tenant_params = params.clone();
            if !parsed.params.is_empty() && !may_lower {
                problems.push(problem(
                    &f.path,
                    None,
                    None,
                    "an overlay may set parameters only when the operator allows this tenant to lower the policy",
                ));
            }
            for (name, value) in parsed.params {
                if !params.contains_key(&name) {
                    problems.push(problem(&f.path, None, None, format!("parameter {name} is not in the base policy")));
                }
                tenant_params.insert(name, value);
            }
            let added: Vec<Draft> = parsed.rules.into_iter().filter_map(|r| draft(&f.path, r, &mut problems)).collect();
            let mut tenant_rules = rules.clone();
            for d in added {
                let Some(r) = compile(d, &tenant_params, &env, &mut problems).map(Arc::new) else { continue };
                match tenant_rules.iter().position(|b| b.id == r.id) {
                    Some(i) => {
                        let b = &tenant_rules[i];
                        let lowers = r.action < b.action || (b.mode == Mode::Enforce && r.mode == Mode::Shadow);
                        if lowers && !may_lower {
                            problems.push(problem(
                                &r.file,
                                r.line,
                                Some(&r.id),
                                format!(
                                    "lowers the base rule ({} {:?} to {} {:?}); the operator has not allowed tenant {tenant} to lower the policy",
                                    b.action.as_str(),
                                    b.mode,
                                    r.action.as_str(),
                                    r.mode
                                ),
                            ));
                            continue;
                        }
                        tenant_rules[i] = r;
                    }
                    None => tenant_rules.push(r),
                }
            }
            tenants.insert(tenant.to_string(), TenantRules { rules: tenant_rules, params: tenant_params });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy { version: version_of(&files), params, rules, tenants, categories, env })
    }

    /// A content hash of every file: what decisions name.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn params(&self) -> &BTreeMap<String, f64> {
        &self.params
    }

    /// Rule ids in order (the base policy's).
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    pub fn categories(&self) -> &Categories {
        &self.categories
    }

    /// Evaluates every rule of `input.stage` (the tenant's overlay applied).
    pub fn evaluate(&self, input: &Input) -> Evaluation {
        let (rules, params) = match self.tenants.get(&input.tenant) {
            Some(t) => (&t.rules, &t.params),
            None => (&self.rules, &self.params),
        };
        let mut ctx = Context::with_env(self.env.clone());
        let bind = |ctx: &mut Context, name: &str, v: Result<Value, cel::SerializationError>| {
            ctx.add_variable_from_value(name, v.unwrap_or(Value::Null));
        };
        bind(&mut ctx, "stage", Ok(Value::from(input.stage.as_str())));
        bind(&mut ctx, "tenant", Ok(Value::from(input.tenant.as_str())));
        bind(&mut ctx, "user", Ok(Value::from(input.user.as_str())));
        bind(&mut ctx, "request", cel::to_value(&input.request));
        bind(&mut ctx, "prompt", cel::to_value(&input.prompt));
        bind(&mut ctx, "references", cel::to_value(&input.references));
        bind(&mut ctx, "outputs", cel::to_value(&input.outputs));
        bind(&mut ctx, "consent", cel::to_value(&input.consent));
        bind(&mut ctx, "history", cel::to_value(&input.history));
        bind(&mut ctx, "params", cel::to_value(params));
        let images = match input.stage {
            Stage::Pre => &input.references,
            Stage::Post => &input.outputs,
        };
        let image_values: Vec<Value> = images.iter().map(|i| cel::to_value(i).unwrap_or(Value::Null)).collect();
        let results = rules
            .iter()
            .filter(|r| r.stage == input.stage)
            .map(|r| {
                let mut result = RuleResult {
                    id: r.id.clone(),
                    stage: r.stage,
                    mode: r.mode,
                    action: r.action,
                    reason: r.reason.clone(),
                    fired: false,
                    message: None,
                    labels: Vec::new(),
                    image: None,
                    error: None,
                };
                let outcome = match r.scope {
                    Scope::Request => fire(r, &ctx).map(|m| m.map(|m| (m, None))),
                    Scope::Image => images
                        .iter()
                        .zip(&image_values)
                        .find_map(|(img, v)| {
                            let mut inner = ctx.new_inner_scope();
                            inner.add_variable_from_value("image", v.clone());
                            match fire(r, &inner) {
                                Ok(None) => None,
                                Ok(Some(m)) => Some(Ok(Some((m, Some(img.name.clone()))))),
                                Err(e) => Some(Err(format!("on {}: {e}", img.name))),
                            }
                        })
                        .unwrap_or(Ok(None)),
                };
                match outcome {
                    Ok(Some((message, image))) => {
                        result.fired = true;
                        result.message = Some(message);
                        result.labels = r.labels.clone();
                        result.image = image;
                    }
                    Ok(None) => {}
                    Err(e) => result.error = Some(e),
                }
                result
            })
            .collect();
        Evaluation { version: self.version.clone(), stage: input.stage, results }
    }

    /// Each rule's description, expression and settings, for `policy explain`.
    pub fn describe(&self, tenant: &str, id: &str) -> Option<RuleDescription> {
        let rules = self.tenants.get(tenant).map_or(&self.rules, |t| &t.rules);
        rules.iter().find(|r| r.id == id).map(|r| RuleDescription {
            id: r.id.clone(),
            description: r.description.clone(),
            when: r.when_source.clone(),
            scope: r.scope,
            file: r.file.clone(),
            line: r.line,
        })
    }
}

/// What `policy explain` shows of a rule beside its result.
#[derive(Debug, Clone, Serialize)]
pub struct RuleDescription {
    pub id: String,
    pub description: String,
    pub when: String,
    pub scope: Scope,
    pub file: String,
    pub line: Option<u64>,
}

/// Evaluates a rule in `ctx`: its message when it fires.
fn fire(r: &Rule, ctx: &Context) -> Result<Option<String>, String> {
    match r.when.execute(ctx) {
        Ok(Value::Bool(true)) => r.message.render(ctx).map(Some),
        Ok(Value::Bool(false)) => Ok(None),
        Ok(other) => Err(format!("`when` gave {other:?}, not true or false")),
        Err(e) => Err(e.to_string()),
    }
}

/// The version a folder's files would have: what a rejected edit is named by.
pub fn version_of_files(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    version_of(&sorted)
}

fn version_of(files: &[&SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files.iter().filter(|f| !f.path.starts_with("tests/")) {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn parse_file(f: &SourceFile, problems: &mut Vec<Problem>) -> Option<PolicyFile> {
    match serde_saphyr::from_str::<PolicyFile>(&f.text) {
        Ok(p) => Some(p),
        Err(e) => {
            let line = e.location().and_then(|l| line_of(&l));
            let message = e.to_string();
            // The first line of the parser's message says what; the rest repeats the source.
            let message = message.lines().next().unwrap_or("not valid YAML").to_string();
            problems.push(problem(&f.path, line, None, format!("YAML: {message}")));
            None
        }
    }
}

/// A rule parsed from a file and checked field by field, not yet compiled.
struct Draft {
    file: String,
    line: Option<u64>,
    when_line: Option<u64>,
    raw: RuleFile,
    stage: Stage,
    scope: Scope,
    action: Action,
    mode: Mode,
}

fn draft(file: &str, spanned: serde_saphyr::Spanned<RuleFile>, problems: &mut Vec<Problem>) -> Option<Draft> {
    let line = line_of(&spanned.referenced);
    let raw = spanned.value;
    let when_line = line_of(&raw.when.referenced);
    let before = problems.len();
    let id = raw.id.clone();
    let p = |m: String| problem(file, line, Some(&id), m);
    if !valid_id(&id) {
        problems.push(p("an id is 1 to 100 characters of a-z, 0-9, -, _ and .".into()));
    }
    // One of a few words; the first is the default when the field is left out.
    let mut one_of = |field: &str, given: Option<&str>, choices: &[&str]| -> usize {
        let given = given.unwrap_or(choices[0]);
        choices.iter().position(|c| *c == given).unwrap_or_else(|| {
            problems.push(p(format!("unknown {field} {given:?}: {}", choices.join(", "))));
            0
        })
    };
    let stage = [Stage::Pre, Stage::Post][one_of("stage", Some(&raw.stage), &["pre", "post"])];
    let scope = [Scope::Request, Scope::Image][one_of("scope", raw.scope.as_deref(), &["request", "image"])];
    let mode = [Mode::Enforce, Mode::Shadow][one_of("mode", raw.mode.as_deref(), &["enforce", "shadow"])];
    let actions = [Action::Allow, Action::Label, Action::Review, Action::Block];
    let action = actions[one_of("action", Some(&raw.action), &actions.map(Action::as_str))];
    if !valid_reason(&raw.reason) {
        problems.push(p(format!("reason {:?} is not a dotted code like vision.public_figure", raw.reason)));
    } else if let Some(code) = likeness_codes::ErrorCode::parse(&raw.reason).filter(|c| c.status() != 403) {
        problems.push(p(format!(
            "reason {:?} is the gateway's own code for something else ({})",
            raw.reason,
            code.meaning()
        )));
    }
    if raw.message.trim().is_empty() {
        problems.push(p("a rule needs a message for the end user".into()));
    }
    if action == Action::Label && raw.labels.is_empty() {
        problems.push(p("a label rule needs at least one label".into()));
    }
    if action != Action::Label && !raw.labels.is_empty() {
        problems.push(p("labels are given only with action label".into()));
    }
    (problems.len() == before).then_some(Draft {
        file: file.to_string(),
        line,
        when_line,
        raw,
        stage,
        scope,
        action,
        mode,
    })
}

/// Compiles a rule's condition and message and checks them against the
/// schema and the parameters.
fn compile(d: Draft, params: &BTreeMap<String, f64>, env: &Env, problems: &mut Vec<Problem>) -> Option<Rule> {
    let id = d.raw.id.clone();
    let scope = schema::Scope::for_rule(d.scope == Scope::Image);
    let source = d.raw.when.value.clone();
    let when = match env.compile(&source) {
        Ok(p) => p,
        Err(e) => {
            problems.push(problem(
                &d.file,
                d.when_line,
                Some(&id),
                format!("`when` is not valid CEL: {}", one_line(&e.to_string())),
            ));
            return None;
        }
    };
    match schema::check(when.expression(), &scope, params) {
        Ok(Type::Bool | Type::Dyn) => {}
        Ok(other) => {
            problems.push(problem(
                &d.file,
                d.when_line,
                Some(&id),
                format!("`when` must be true or false, but it is a {other}"),
            ));
            return None;
        }
        Err(e) => {
            problems.push(problem(&d.file, d.when_line, Some(&id), format!("`when`: {e}")));
            return None;
        }
    }
    let message = match Template::parse(&d.raw.message, env, &scope, params) {
        Ok(m) => m,
        Err(e) => {
            problems.push(problem(&d.file, d.line, Some(&id), format!("`message`: {e}")));
            return None;
        }
    };
    Some(Rule {
        id,
        description: d.raw.description,
        stage: d.stage,
        scope: d.scope,
        when,
        when_source: source,
        action: d.action,
        reason: d.raw.reason,
        message,
        labels: d.raw.labels,
        mode: d.mode,
        file: d.file,
        line: d.line,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_policy_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Policy>();
        shared::<super::Policies>();
    }
}
