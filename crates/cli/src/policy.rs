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
