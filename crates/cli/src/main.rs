//! `likeness`: the one binary. Only this crate knows argv.

mod config;
mod serve;
mod verify;

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
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a development CA and an Ed25519 signing certificate.
    Init {
        /// Where to write ca.pem, signer-chain.pem and signer.key.
        #[arg(long, default_value = "./data/keys")]
        dir: PathBuf,
        /// Organization named in the certificates.
        #[arg(long, default_value = "likeness development")]
        organization: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Keys { command: KeysCommand::Init { dir, organization } } => {
            match likeness_provenance::keys::init_dev_keys(&dir, &organization) {
                Ok(true) => {
                    println!("created a development CA and signing certificate in {}", dir.display());
                    println!("  trust anchor:  {}", dir.join(likeness_provenance::keys::CA_FILE).display());
                    println!("  signing chain: {}", dir.join(likeness_provenance::keys::CHAIN_FILE).display());
                    println!(
                        "  signing key:   {} (mode 0600)",
                        dir.join(likeness_provenance::keys::KEY_FILE).display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    println!("{} already holds a signing key; nothing changed", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify(args) => verify::run(args),
    }
}
