//! `check-history <history.json> [--json]`: checks a recorded history and prints the report.
//! Exit status: 0 no violations (undecided keys are reported but allowed), 1 violations,
//! 2 usage or load error.

use metastore_checker::{History, check};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut path: Option<PathBuf> = None;
    let mut json = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: check-history <history.json> [--json]");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("usage: check-history <history.json> [--json]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("usage: check-history <history.json> [--json]");
        return ExitCode::from(2);
    };
    let history = match History::load(&path) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot load {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let report = check(&history);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        println!("{report}");
        println!("checked in {:.2?}", started.elapsed());
    }
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
