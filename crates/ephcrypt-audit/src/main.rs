//! `ephcrypt-audit`: offline audit of a copy of a PostgreSQL data directory.
//!
//! ```text
//! ephcrypt-audit [--json] [--root DIR] DATA_DIRECTORY
//! ```
//!
//! Exit status: 0 no finding, 1 findings (plaintext, unexpected or
//! unreadable entries, tablespaces outside the copy), 2 usage error or a data
//! directory that cannot be audited.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: ephcrypt-audit [--json] [--root DIR] DATA_DIRECTORY

Audits a copy of a PostgreSQL data directory (a volume snapshot, a backup,
cp -a) without a server or a key: every temp file, file-set member,
temporary relation (every database and tablespace) and logical-decoding
spill file must carry pg_ephcrypt's header.

  --json       one JSON object instead of text
  --root DIR   the copy is of a whole volume mounted at DIR, which stands for
               / of the original: absolute tablespace links are looked up
               below DIR (without it only tablespaces inside the data
               directory are followed)
  -h, --help   show this help
  --version    show the version

Each entry is sealed (with its key epoch), empty, plaintext, unexpected (not
a regular file) or unreadable.
Exit status: 0 clean, 1 findings (plaintext, unexpected, unreadable, or a
tablespace outside the copy), 2 usage error or data directory not auditable.";

struct Args {
    json: bool,
    root: Option<PathBuf>,
    data_dir: PathBuf,
}

enum Parsed {
    Run(Args),
    Help,
    Version,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut json = false;
    let mut root = None;
    let mut data_dir = None;
    let mut options_done = false;
    while let Some(arg) = argv.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            if data_dir.replace(PathBuf::from(arg)).is_some() {
                return Err("more than one data directory given".into());
            }
            continue;
        }
        match arg.as_str() {
            "--" => options_done = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "--version" => return Ok(Parsed::Version),
            "--json" => json = true,
            "--root" => {
                let v = argv.next().ok_or("option --root needs a value")?;
                if root.replace(PathBuf::from(v)).is_some() {
                    return Err("option --root given twice".into());
                }
            }
            _ => match arg.strip_prefix("--root=") {
                Some(v) => {
                    if root.replace(PathBuf::from(v)).is_some() {
                        return Err("option --root given twice".into());
                    }
                }
                None => return Err(format!("unknown option {arg}")),
            },
        }
    }
    let data_dir = data_dir.ok_or("a data directory is required")?;
    Ok(Parsed::Run(Args {
        json,
        root,
        data_dir,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("ephcrypt-audit {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("ephcrypt-audit: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match ephcrypt_audit::audit(&args.data_dir, args.root.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ephcrypt-audit: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if args.json {
        format!("{}\n", report.to_json())
    } else {
        report.to_text()
    };
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
