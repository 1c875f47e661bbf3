//! `ephcrypt-verify`: check a pg_ephcrypt attestation document offline.
//!
//! ```text
//! ephcrypt-verify (--public-key <hex> | --anchor <hex|PEM file>) [--challenge <hex>] [--epoch <hex>] [FILE|-]
//! ```
//!
//! Reads the document from FILE, or standard input if FILE is `-` or absent
//! (e.g. the output of `psql -At -c "SELECT pg_ephcrypt_attest('\x…')"`).
//! Exit 0 and `OK epoch=… challenge=… time=… anchor=…` on standard output if
//! it verifies; exit 1 and `FAILED: <reason>` on standard error if it does not;
//! exit 2 on a usage error (bad arguments, unreadable input).
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use ephcrypt_attest::{
    anchored_claim, parse_document, parse_hex_arg, parse_public_key, verify_anchored,
    verify_with_epoch, AttestError,
};

const USAGE: &str = "\
usage: ephcrypt-verify (--public-key <hex> | --anchor <hex|PEM file>) [--challenge <hex>] [--epoch <hex>] [FILE|-]

Verifies a pg_ephcrypt attestation document (JSON, e.g. from
  psql -At -c \"SELECT pg_ephcrypt_attest('\\x0123...')\").
Reads FILE, or standard input if FILE is '-' or absent.

  --public-key <hex>  the 32-byte Ed25519 attestation public key of the epoch
                      (64 hex digits; a \\x prefix as printed by psql for
                      bytea is accepted)
  --anchor <key>      the operator's anchor public key: 64 hex digits, or a PEM
                      public key file (openssl pkey -pubout); checks the chain
                      anchor -> instance certificate -> epoch certificate ->
                      document, so --public-key is not needed
  --challenge <hex>   require the document's challenge to be these bytes
  --epoch <hex>       require the document's epoch_id to be this epoch
  -h, --help          show this help

The OK line ends with anchor=verified (the chain was checked), anchor=none
(the document is not anchored: it vouches only for the given public key) or
anchor=not-checked (anchored, but no --anchor was given).
Exit status: 0 verified, 1 verification failed, 2 usage error.";

struct Args {
    public_key: Option<Vec<u8>>,
    anchor: Option<[u8; 32]>,
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
    let mut anchor = None;
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
            "--anchor" => &mut anchor,
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
    if public_key.is_none() && anchor.is_none() {
        return Err("--public-key or --anchor is required".into());
    }
    let public_key = match public_key {
        None => None,
        Some(pk) => {
            let pk = parse_hex_arg(&pk, "--public-key").map_err(|e: AttestError| e.to_string())?;
            if pk.len() != 32 {
                return Err(format!(
                    "--public-key must be 32 bytes (64 hex digits), got {} bytes",
                    pk.len()
                ));
            }
            Some(pk)
        }
    };
    let anchor = match anchor {
        None => None,
        Some(a) => Some(anchor_key(&a)?),
    };
    if let Some(c) = &challenge {
        parse_hex_arg(c, "--challenge").map_err(|e| e.to_string())?;
    }
    if let Some(e) = &epoch {
        parse_hex_arg(e, "--epoch").map_err(|e| e.to_string())?;
    }
    Ok(Parsed::Run(Args {
        public_key,
        anchor,
        challenge,
        epoch,
        input,
    }))
}

/// `--anchor`: 64 hex digits, else the path of a PEM public key file.
fn anchor_key(arg: &str) -> Result<[u8; 32], String> {
    if let Ok(pk) = parse_public_key(arg) {
        return Ok(pk);
    }
    let text = std::fs::read_to_string(arg)
        .map_err(|e| format!("--anchor {arg}: neither 64 hex digits nor a readable file: {e}"))?;
    parse_public_key(&text).map_err(|_| {
        format!("--anchor {arg}: not an Ed25519 PEM public key (openssl pkey -pubout)")
    })
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
        let challenge = args.challenge.as_deref();
        let epoch = args.epoch.as_deref();
        match args.anchor {
            Some(anchor) => {
                let v = verify_anchored(&doc, &anchor, challenge, epoch)?;
                if let Some(pk) = &args.public_key {
                    if pk[..] != v.epoch_public_key {
                        return Err(AttestError::KeyMismatch);
                    }
                }
                Ok((v.document, "verified"))
            }
            None => {
                let pk = args.public_key.as_deref().unwrap_or_default();
                let v = verify_with_epoch(&doc, pk, challenge, epoch)?;
                let anchor = match anchored_claim(&doc) {
                    Some(true) => "not-checked",
                    _ => "none",
                };
                Ok((v, anchor))
            }
        }
    });
    match outcome {
        Ok((v, anchor)) => {
            let show = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
            println!(
                "OK epoch={} challenge={} time={} anchor={anchor}",
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
