//! `likeness`: the one binary. Only this crate knows argv.

mod audit;
mod config;
mod feedback;
mod keys;
mod policy;
mod serve;
mod verify;
mod vision;
mod watermark;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "likeness",
    version,
    about = "Consent, moderation and provenance gateway for personalized image generation"
)]
struct Cli {
    /// Where keys, the database and the dev API key live [default: ./data].
    #[arg(long, global = true, value_name = "DIR", env = "LIKENESS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check the Content Credentials of images.
    Verify(verify::VerifyArgs),
    /// Run the vision models on images.
    Vision {
        #[command(subcommand)]
        command: VisionCommand,
    },
    /// Edit the public-figure gallery.
    Gallery {
        #[command(subcommand)]
        command: GalleryCommand,
    },
    /// The decision log: verify, show, export.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Feedback people sent on the detection tool's verdicts, as JSON lines.
    Feedback(feedback::FeedbackArgs),
    /// Check, test, explain and replay policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Embed or detect the invisible watermark.
    Watermark {
        #[command(subcommand)]
        command: WatermarkCommand,
    },
}

#[derive(Subcommand)]
enum WatermarkCommand {
    /// Mark an image with a 64-bit payload.
    Embed(watermark::EmbedArgs),
    /// Look for a mark in images; exit 0 if every file has one, 2 if any has none.
    Detect(watermark::DetectArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Load a policy folder and report every problem (exit 1 if any).
    Check(policy::DirArgs),
    /// Run the golden cases under <DIR>/tests (exit 1 if any fails).
    Test(policy::TestArgs),
    /// Evaluate one input document and show every rule's result.
    Explain(policy::ExplainArgs),
    /// Print the input schema (policies/SCHEMA.md).
    Schema,
    /// Replay a candidate policy on past decisions and show what would change.
    Replay(policy::ReplayArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the decision log's hash chain and signed checkpoints (exit 1 at the first broken record).
    Verify(audit::VerifyArgs),
    /// Print one decision record.
    Show(audit::ShowArgs),
    /// Print decision records as JSON lines, oldest first.
    Export(audit::ExportArgs),
}

#[derive(Subcommand)]
enum VisionCommand {
    /// Faces (box, score, age, P(minor), gallery matches) and NSFW score per image.
    Analyze(vision::AnalyzeArgs),
}

#[derive(Subcommand)]
enum GalleryCommand {
    /// Create or extend a gallery entry from photos with one face each.
    Add(vision::GalleryAddArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a development CA, an Ed25519 signing certificate and a watermark key.
    Init {
        /// Where to write ca.pem, signer-chain.pem, signer.key and
        /// watermark.key [default: <data-dir>/keys].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Organization named in the certificates.
        #[arg(long, default_value = "likeness development")]
        organization: String,
    },
}

fn main() -> ExitCode {
    // `likeness verify DIR | head` should stop quietly when the reader goes
    // away, as other Unix tools do, instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal, before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let data_dir = cli.data_dir;
    match cli.command {
        Command::Serve(args) => match serve::run(args, data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Keys { command: KeysCommand::Init { dir, organization } } => {
            let dir = dir.unwrap_or_else(|| keys::DataDir::new(data_dir).keys());
            report(keys_init(&dir, &organization))
        }
        Command::Verify(args) => verify::run(args, &keys::DataDir::new(data_dir)),
        Command::Vision { command: VisionCommand::Analyze(args) } => report(vision::analyze(args)),
        Command::Policy { command } => report(match command {
            PolicyCommand::Check(args) => policy::check(args),
            PolicyCommand::Test(args) => policy::test(args),
            PolicyCommand::Explain(args) => policy::explain(args),
            PolicyCommand::Schema => policy::print_schema(),
            PolicyCommand::Replay(args) => policy::replay(args, &keys::DataDir::new(data_dir)),
        }),
        Command::Audit { command } => {
            let data_dir = keys::DataDir::new(data_dir);
            report(match command {
                AuditCommand::Verify(args) => audit::verify(args, &data_dir),
                AuditCommand::Show(args) => audit::show(args, &data_dir),
                AuditCommand::Export(args) => audit::export(args, &data_dir),
            })
        }
        Command::Feedback(args) => report(feedback::list(args, &keys::DataDir::new(data_dir))),
        Command::Gallery { command: GalleryCommand::Add(args) } => report(vision::gallery_add(args)),
        Command::Watermark { command: WatermarkCommand::Embed(args) } => {
            report(watermark::embed(args, &keys::DataDir::new(data_dir)))
        }
        Command::Watermark { command: WatermarkCommand::Detect(args) } => {
            report(watermark::detect(args, &keys::DataDir::new(data_dir)))
        }
    }
}

/// `likeness keys init`: the development signing identity and a watermark
/// key, each made only if missing.
fn keys_init(dir: &std::path::Path, organization: &str) -> anyhow::Result<ExitCode> {
    if keys::init_watermark_key(dir)? {
        println!("created a watermark key: {} (mode 0600)", keys::watermark_key_in(dir).display());
    }
    if keys::init_signing_identity(dir, organization)? {
        let paths = keys::signing_paths(dir);
        println!("created a development CA and signing certificate in {}", dir.display());
        println!("  trust anchor:  {}", dir.join(keys::CA_FILE).display());
        println!("  signing chain: {}", paths.chain.display());
        println!("  signing key:   {} (mode 0600)", paths.key.display());
    } else {
        println!("{} already holds a signing key; nothing changed", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a regular file of at most `max` bytes, without ever holding more:
/// `/dev/zero` or a huge file is an error, not an out-of-memory.
fn read_bounded(path: &std::path::Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        anyhow::bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// Usage and I/O failures of a tool command: the message, and exit code 3.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(3)
    })
}
