//! `likeness audit verify|show|export`: the decision log from the command
//! line, against the gateway's database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use likeness_store::{Store, StoredDecision};

use crate::keys::DataDir;

/// Which database: `--database URL`, else the data directory's SQLite file.
#[derive(clap::Args)]
pub struct DatabaseArgs {
    /// `postgres://...` or a SQLite file [default: <data-dir>/likeness.db].
    #[arg(long, env = "LIKENESS_DATABASE")]
    database: Option<String>,
}

impl DatabaseArgs {
    pub fn open(&self, data_dir: &DataDir, rt: &tokio::runtime::Runtime) -> anyhow::Result<Store> {
        let url = match &self.database {
            Some(url) => url.clone(),
            None => {
                let path = data_dir.database();
                anyhow::ensure!(path.is_file(), "no database at {}: give --data-dir or --database", path.display());
                path.display().to_string()
            }
        };
        rt.block_on(Store::open(&url)).context("opening the database")
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The gateway's signing chain (PEM): checkpoints must be signed by its
    /// key [default: <data-dir>/keys/signer-chain.pem, when it exists].
    #[arg(long, value_name = "PEM")]
    signer_chain: Option<PathBuf>,
}

/// Exit 0 when the chain holds, 1 naming the first broken record.
pub fn verify(args: VerifyArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let store = args.db.open(data_dir, &rt)?;
    let chain = args.signer_chain.clone().or_else(|| {
        let default = crate::keys::signing_paths(&data_dir.keys()).chain;
        default.is_file().then_some(default)
    });
    let expected = match &chain {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(likeness_provenance::chain_public_key(&pem).context("the signing chain has no Ed25519 key")?)
        }
        None => None,
    };
    let signature_ok = |key: &str, message: &[u8], signature: &str| -> bool {
        let (Ok(key), Ok(sig)) = (hex::decode(key), hex::decode(signature)) else { return false };
        let (Ok(key), Ok(sig)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(sig)) else { return false };
        expected.is_none_or(|e| e == key) && likeness_provenance::verify_message(&key, message, &sig)
    };
    let report = rt.block_on(store.verify_chain(&signature_ok))?;
    match report.broken {
        None => {
            println!("decision log: intact, {} records, {} signed checkpoints", report.records, report.checkpoints);
            if expected.is_none() {
                println!("  (no signing chain given: checkpoints were checked against the keys they name)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            println!("decision log: BROKEN at record {} ({}): {}", b.seq, b.id, b.what);
            println!("  {} records before it hold", report.records);
            Ok(ExitCode::from(1))
        }
    }
}

fn as_json(d: &StoredDecision) -> serde_json::Value {
    serde_json::json!({
        "seq": d.seq,
        "id": d.record.id,
        "kind": d.record.kind.as_str(),
        "tenant": d.record.tenant,
        "user": d.record.user,
        "created_at_ms": d.record.created_at_ms,
        "action": d.record.action,
        "reason": d.record.reason,
        "record": serde_json::from_str::<serde_json::Value>(&d.record.body).unwrap_or_default(),
        "prev_hash": d.prev_hash,
        "hash": d.hash,
    })
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The request id (`req_...`), or `<review id>:resolution`.
    #[arg(long)]
    request: String,
}

pub fn show(args: ShowArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let store = args.db.open(data_dir, &rt)?;
    match rt.block_on(store.decision(&args.request))? {
        Some(d) => {
            println!("{}", serde_json::to_string_pretty(&as_json(&d))?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no decision {} in the log", args.request);
            Ok(ExitCode::from(2))
        }
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// How far back: 30m, 24h, 7d [default: everything].
    #[arg(long, value_parser = parse_age)]
    since: Option<i64>,
}

/// JSON lines, oldest first: for a SIEM.
pub fn export(args: ExportArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let rt = runtime()?;
    let store = args.db.open(data_dir, &rt)?;
    let since = args.since.map_or(i64::MIN, |age| likeness_store::now_ms() - age);
    let mut out = std::io::stdout().lock();
    for_each_since(&store, &rt, since, |d| writeln!(out, "{}", as_json(d)).map_err(Into::into))?;
    Ok(ExitCode::SUCCESS)
}

/// Calls `f` on every record since `since_ms`, in chain order, a page at a time.
pub fn for_each_since(
    store: &Store,
    rt: &tokio::runtime::Runtime,
    since_ms: i64,
    mut f: impl FnMut(&StoredDecision) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = rt.block_on(store.decisions_since(since_ms, after, 1000))?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.seq;
        for d in &page {
            f(d)?;
        }
    }
}

/// `30m`, `24h`, `7d` in milliseconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| format!("{s:?}: write a number and a unit, e.g. 24h or 7d"))?;
    let ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: the unit is m, h or d")),
    };
    n.checked_mul(ms).filter(|v| *v >= 0).ok_or_else(|| format!("{s:?} is out of range"))
}
