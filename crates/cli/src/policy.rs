//! `likeness policy check|test|explain|schema|replay`: what a
//! trust-and-safety analyst runs before a policy change goes live.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use likeness_policy::{run_golden, schema, Input, LoadOptions, Policy, SourceFile};

/// Largest policy file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where the gateway looks for policies when not told.
pub const DEFAULT_DIR: &str = "./policies";

/// Reads a policy folder: `*.yaml` at the top, `tenants/*.yaml`,
/// `categories/*.txt` and `tests/*.yaml`. Everything else (README.md,
/// SCHEMA.md) is not part of the policy.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for (sub, ext) in [("", "yaml"), ("", "yml"), ("tenants", "yaml"), ("categories", "txt"), ("tests", "yaml")] {
        let folder = dir.join(sub);
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !sub.is_empty() => continue,
            Err(e) => return Err(e).with_context(|| format!("reading the policy folder {}", folder.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !entry.file_type()?.is_file() || !name.ends_with(&format!(".{ext}")) || name.starts_with('.') {
                continue;
            }
            let bytes = crate::read_bounded(&entry.path(), MAX_FILE_BYTES)?;
            let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", entry.path().display()))?;
            let path = if sub.is_empty() { name } else { format!("{sub}/{name}") };
            files.push(SourceFile { path, text });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Reads and loads a folder, printing every problem; None when it does not load.
fn load(dir: &Path, options: &LoadOptions) -> anyhow::Result<Option<(Policy, Vec<SourceFile>)>> {
    let files = read_dir(dir)?;
    match Policy::load(&files, options) {
        Ok(p) => Ok(Some((p, files))),
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", dir.display());
            }
            eprintln!("{} problem(s); the policy was not loaded", problems.len());
            Ok(None)
        }
    }
}

#[derive(clap::Args)]
pub struct DirArgs {
    /// The policy folder [default: ./policies].
    #[arg(value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

/// Exit 0 when the policy loads, 1 with every problem otherwise.
pub fn check(args: DirArgs) -> anyhow::Result<ExitCode> {
    let Some((policy, _)) = load(&args.dir, &LoadOptions::default())? else { return Ok(ExitCode::from(1)) };
    println!(
        "{}: ok, version {}, {} rules: {}",
        args.dir.display(),
        &policy.version()[..12],
        policy.rule_ids().len(),
        policy.rule_ids().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// One JSON object per case.
    #[arg(long)]
    json: bool,
}

/// Runs the golden cases in `tests/`; exit 1 when any fails.
pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir.dir;
    let Some((policy, files)) = load(dir, &LoadOptions::default())? else { return Ok(ExitCode::from(1)) };
    let results = match run_golden(&policy, &files) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("{}: {p}", dir.display());
            }
            return Ok(ExitCode::from(1));
        }
    };
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else if r.passed {
            println!("ok    {}: {}", r.file, r.name);
        } else {
            println!("FAIL  {}: {}", r.file, r.name);
            println!(
                "      expected {} {:?}, got {} {:?}{}",
                r.expected.action.as_str(),
                r.expected.rules,
                r.action.as_str(),
                r.rules,
                r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
    }
    if !args.json {
        println!("{} cases, {} passed, {failed} failed", results.len(), results.len() - failed);
    }
    if results.is_empty() {
        eprintln!("no golden cases in {}/tests/", dir.display());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::from(if failed == 0 { 0 } else { 1 }))
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// An input document (JSON, or YAML), as the decision log keeps them;
    /// fields left out take their defaults.
    input: PathBuf,
    /// The policy folder.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    policies: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Evaluates one input and shows every rule of its stage: fired or not, and why.
pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let Some((policy, _)) = load(&args.policies, &LoadOptions::default())? else { return Ok(ExitCode::from(1)) };
    let text = String::from_utf8(crate::read_bounded(&args.input, MAX_FILE_BYTES)?)?;
    let input: Input =
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not an input document", args.input.display()))?;
    let evaluation = policy.evaluate(&input);
    let outcome = evaluation.outcome();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("policy {} on a {} input for tenant {:?}:", &policy.version()[..12], input.stage.as_str(), input.tenant);
    for r in &evaluation.results {
        let d = policy.describe(&input.tenant, &r.id);
        let state = match (&r.error, r.fired) {
            (Some(_), _) => "ERROR",
            (None, true) => "fired",
            (None, false) => "-",
        };
        println!("  {state:<6} {} [{} {:?}]", r.id, r.action.as_str(), r.mode);
        if let Some(d) = &d {
            println!("         when: {}", d.when.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if let Some(m) = &r.message {
            println!("         message: {m}");
        }
        if let Some(e) = &r.error {
            println!("         error: {e}");
        }
    }
    match &outcome.failed {
        Some((rule, e)) => println!("outcome: refused with policy.error (rule {rule}: {e})"),
        None => println!(
            "outcome: {}{}{}",
            outcome.action.as_str(),
            outcome.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            if outcome.labels.is_empty() { String::new() } else { format!(", labels {:?}", outcome.labels) }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `policies/SCHEMA.md`.
pub fn print_schema() -> anyhow::Result<ExitCode> {
    print!("{}", schema().markdown());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The candidate policy folder to replay.
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// How far back: 30m, 24h, 7d [default: the whole log].
    #[arg(long, value_parser = crate::audit::parse_age)]
    since: Option<i64>,
    #[command(flatten)]
    db: crate::audit::DatabaseArgs,
    /// One JSON document with every changed decision.
    #[arg(long)]
    json: bool,
    /// Tenants whose overlay may lower the policy, as in the gateway's
    /// `[policy] tenants_may_lower`.
    #[arg(long = "tenant-may-lower", value_name = "TENANT")]
    tenants_may_lower: Vec<String>,
}

/// One past decision replayed.
#[derive(serde::Serialize)]
struct Replayed {
    id: String,
    tenant: String,
    from: String,
    to: String,
    from_reason: Option<String>,
    to_reason: Option<String>,
    newly_fired: Vec<String>,
    no_longer_fired: Vec<String>,
}

/// What a candidate policy decides on a logged decision's input documents:
/// (action, reason, rules fired). A request refused before generation has
/// no outputs to judge: if the candidate lets its references through,
/// the action is `allow (outputs never made)`.
fn replay_one(policy: &Policy, inputs: &[Input]) -> (String, Option<String>, Vec<String>) {
    let mut fired = Vec::new();
    let mut decided = (likeness_policy::Action::Allow, None);
    for input in inputs {
        let e = policy.evaluate(input);
        fired.extend(e.fired().map(|r| r.id.clone()));
        let o = e.outcome();
        if let Some((rule, _)) = o.failed {
            return ("block".into(), Some(format!("policy.error ({rule})")), fired);
        }
        if o.action > decided.0 {
            decided = (o.action, o.reason);
        }
        if decided.0 >= likeness_policy::Action::Review {
            return (decided.0.as_str().into(), decided.1, fired);
        }
    }
    let action = decided.0.as_str().to_string();
    let action = if inputs.len() < 2 { format!("{action} (outputs never made)") } else { action };
    (action, decided.1, fired)
}

/// Replays a candidate policy on the input documents of past decisions and
/// reports what would change, by transition and by rule.
pub fn replay(args: ReplayArgs, data_dir: &crate::keys::DataDir) -> anyhow::Result<ExitCode> {
    let options = LoadOptions { tenants_may_lower: args.tenants_may_lower.iter().cloned().collect() };
    let Some((policy, _)) = load(&args.policies, &options)? else { return Ok(ExitCode::from(1)) };
    let rt = crate::audit::runtime()?;
    let store = args.db.open(data_dir, &rt)?;
    let since = args.since.map_or(i64::MIN, |age| likeness_store::now_ms() - age);
    let (mut replayed, mut skipped) = (0u64, 0u64);
    let mut changed: Vec<Replayed> = Vec::new();
    crate::audit::for_each_since(&store, &rt, since, |d| {
        if d.record.kind != likeness_store::Kind::Generation {
            return Ok(());
        }
        let body: serde_json::Value = serde_json::from_str(&d.record.body).unwrap_or_default();
        let inputs: Vec<Input> = serde_json::from_value(body["inputs"].clone()).unwrap_or_default();
        if inputs.is_empty() {
            // Refused by consent before the policy ran: nothing to replay.
            skipped += 1;
            return Ok(());
        }
        replayed += 1;
        let (to, to_reason, fired) = replay_one(&policy, &inputs);
        let was: Vec<String> = body["policy"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(String::from))
            .collect();
        let from_reason = d.record.reason.clone().or_else(|| body["reasons"][0].as_str().map(String::from));
        // A refusal's reason is part of the decision; a label's is not.
        let refusal = |a: &str| a == "block" || a == "review";
        let to_action = to.split(' ').next().unwrap_or_default().to_string();
        let same = to_action == d.record.action && (!refusal(&to_action) || to_reason == from_reason);
        if !same {
            changed.push(Replayed {
                id: d.record.id.clone(),
                tenant: d.record.tenant.clone(),
                from: d.record.action.clone(),
                to,
                from_reason,
                to_reason,
                newly_fired: fired.iter().filter(|r| !was.contains(r)).cloned().collect(),
                no_longer_fired: was.iter().filter(|r| !fired.contains(r)).cloned().collect(),
            });
        }
        Ok(())
    })?;
    let mut transitions: std::collections::BTreeMap<(String, String), Vec<&str>> = Default::default();
    let mut by_rule: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for c in &changed {
        transitions.entry((c.from.clone(), c.to.clone())).or_default().push(&c.id);
        for r in &c.newly_fired {
            by_rule.entry(r.clone()).or_default().0 += 1;
        }
        for r in &c.no_longer_fired {
            by_rule.entry(r.clone()).or_default().1 += 1;
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "policy": policy.version(),
            "replayed": replayed,
            "skipped": skipped,
            "changed": changed.len(),
            "transitions": transitions.iter().map(|((from, to), ids)| serde_json::json!({
                "from": from, "to": to, "count": ids.len(), "examples": &ids[..ids.len().min(5)],
            })).collect::<Vec<_>>(),
            "rules": by_rule.iter().map(|(id, (n, g))| serde_json::json!({
                "id": id, "newly_fired": n, "no_longer_fired": g,
            })).collect::<Vec<_>>(),
            "decisions": changed,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "policy {} replayed on {replayed} decisions ({skipped} refused by consent before any policy ran, not replayable)",
        &policy.version()[..12]
    );
    println!("{} would change:", changed.len());
    for ((from, to), ids) in &transitions {
        println!("  {from:>6} -> {to}: {}   e.g. {}", ids.len(), ids[..ids.len().min(3)].join(", "));
    }
    for (id, (newly, gone)) in &by_rule {
        println!("  rule {id}: fires on {newly} more, {gone} fewer");
    }
    Ok(ExitCode::SUCCESS)
}
