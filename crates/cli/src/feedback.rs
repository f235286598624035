//! `likeness feedback`: what people said of the detection tool's verdicts
//! (`POST /v1/verify/feedback`), for the operator who must look at it.

use std::process::ExitCode;

use crate::audit::{parse_age, runtime, DatabaseArgs};
use crate::keys::DataDir;

#[derive(clap::Args)]
pub struct FeedbackArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// How far back: 30m, 24h, 7d [default: everything kept].
    #[arg(long, value_parser = parse_age)]
    since: Option<i64>,
}

/// JSON lines, oldest first, then a count per choice on stderr.
pub fn list(args: FeedbackArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    const PAGE: i64 = 500;
    let rt = runtime()?;
    let store = args.db.open(data_dir, &rt)?;
    let since = args.since.map_or(i64::MIN, |age| likeness_store::now_ms() - age);
    let mut out = std::io::stdout().lock();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut total = 0;
    let mut last: Option<(i64, String)> = None;
    loop {
        let page = rt.block_on(store.feedback(since, last.as_ref().map(|(t, id)| (*t, id.as_str())), PAGE))?;
        for f in &page {
            *counts.entry(f.choice.as_str()).or_default() += 1;
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.received_at_ms) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
            let line = serde_json::json!({
                "id": f.id,
                "verdict_id": f.verdict_id,
                "choice": f.choice.as_str(),
                "comment": f.comment,
                "received_at": at,
            });
            writeln!(out, "{line}")?;
        }
        total += page.len();
        match page.last() {
            Some(f) if page.len() as i64 == PAGE => last = Some((f.received_at_ms, f.id.clone())),
            _ => break,
        }
    }
    let summary: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let pieces = if total == 1 { "piece" } else { "pieces" };
    eprintln!("{total} {pieces} of feedback{}{}", if summary.is_empty() { "" } else { ": " }, summary.join(", "));
    Ok(ExitCode::SUCCESS)
}
