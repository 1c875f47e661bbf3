//! `ephcrypt-verify`: check a pg_ephcrypt attestation document offline.
//!
//! ```text
//! ephcrypt-verify --public-key <hex> [--challenge <hex>] [--epoch <hex>] [FILE|-]
//! ```
//!
//! Reads the document from FILE, or standard input if FILE is `-` or absent
//! (e.g. the output of `psql -At -c "SELECT pg_ephcrypt_attest('\x…')"`).
//! Exit 0 and `OK epoch=… challenge=… time=…` on standard output if it
//! verifies; exit 1 and `FAILED: <reason>` on standard error if it does not;
//! exit 2 on a usage error (bad arguments, unreadable input).
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use ephcrypt_attest::{parse_document, parse_hex_arg, verify_with_epoch, AttestError};

const USAGE: &str = "\
usage: ephcrypt-verify --public-key <hex> [--challenge <hex>] [--epoch <hex>] [FILE|-]

Verifies a pg_ephcrypt attestation document (JSON, e.g. from
  psql -At -c \"SELECT pg_ephcrypt_attest('\\x0123...')\").
Reads FILE, or standard input if FILE is '-' or absent.

  --public-key <hex>  the 32-byte Ed25519 attestation public key (64 hex digits;
                      a \\x prefix as printed by psql for bytea is accepted)
  --challenge <hex>   require the document's challenge to be these bytes
  --epoch <hex>       require the document's epoch_id to be this epoch
  -h, --help          show this help

Exit status: 0 verified, 1 verification failed, 2 usage error.";

struct Args {
    public_key: Vec<u8>,
    challenge: Option<String>,
    epoch: Option<String>,
    input: Option<String>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut public_key = None;
    let mut challenge = None;
    let mut epoch = None;
    let mut input = None;
    let mut options_done = false;
    while let Some(arg) = argv.next() {
        if options_done || arg == "-" || !arg.starts_with('-') {
            if input.replace(arg).is_some() {
                return Err("more than one input file given".into());
            }
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--public-key" => &mut public_key,
            "--challenge" => &mut challenge,
            "--epoch" => &mut epoch,
            _ => return Err(format!("unknown option {name}")),
        };
        let value = match inline {
            Some(v) => v,
            None => argv
                .next()
                .ok_or_else(|| format!("option {name} needs a value"))?,
        };
        if slot.replace(value).is_some() {
            return Err(format!("option {name} given twice"));
        }
    }
    let public_key = public_key.ok_or("--public-key is required")?;
    let public_key =
        parse_hex_arg(&public_key, "--public-key").map_err(|e: AttestError| e.to_string())?;
    if public_key.len() != 32 {
        return Err(format!(
            "--public-key must be 32 bytes (64 hex digits), got {} bytes",
            public_key.len()
        ));
    }
    if let Some(c) = &challenge {
        parse_hex_arg(c, "--challenge").map_err(|e| e.to_string())?;
    }
    if let Some(e) = &epoch {
        parse_hex_arg(e, "--epoch").map_err(|e| e.to_string())?;
    }
    Ok(Parsed::Run(Args {
        public_key,
        challenge,
        epoch,
        input,
    }))
}

fn read_input(input: Option<&str>) -> std::io::Result<String> {
    match input {
        None | Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("ephcrypt-verify: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match read_input(args.input.as_deref()) {
        Ok(text) => text,
        Err(e) => {
            let name = args.input.as_deref().unwrap_or("-");
            eprintln!("ephcrypt-verify: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = parse_document(&text).and_then(|doc| {
        verify_with_epoch(
            &doc,
            &args.public_key,
            args.challenge.as_deref(),
            args.epoch.as_deref(),
        )
    });
    match outcome {
        Ok(v) => {
            let show = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
            println!(
                "OK epoch={} challenge={} time={}",
                show(v.epoch_id),
                show(v.challenge),
                show(v.timestamp)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::from(1)
        }
    }
}
