//! `sigil report` on the command line: reads the files (or stdin), runs
//! the report or the chain check (`report`), prints, and gives the exit
//! code. The arguments are `cli`'s; the work is `report`'s.

use crate::cli::{OutputFormat, ReportArgs};
use crate::report::{report_lines, unwrap_lines, verify_lines, Filter};

/// `sigil report`: 0, or 1 for a broken chain (or unreadable lines) with
/// `--verify`, 2 when the input cannot be read.
pub fn main(args: &ReportArgs) -> u8 {
    let text = match read_input(&args.files) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sigil report: {e}");
            return 2;
        }
    };
    let json = args.output == OutputFormat::Json;
    let lines = unwrap_lines(&text, args.format);
    if args.verify {
        let key = match &args.key_file {
            Some(path) => match crate::audit::AuditKey::from_file(path) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("sigil report: --key-file {e}");
                    return 2;
                }
            },
            None => None,
        };
        let mut extra = Vec::new();
        for path in &args.checkpoints {
            match std::fs::read_to_string(path) {
                Ok(t) => extra.push(t),
                Err(e) => {
                    eprintln!("sigil report: {}: {e}", path.display());
                    return 2;
                }
            }
        }
        let extra_lines: Vec<(usize, std::borrow::Cow<'_, str>)> = extra
            .iter()
            .flat_map(|t| unwrap_lines(t, args.format))
            .collect();
        let v = verify_lines(&lines, &extra_lines, key.as_ref());
        if json {
            println!("{}", v.json());
        } else {
            print!("{}", v.text(args.format));
        }
        return u8::from(!v.whole());
    }
    let filter = Filter {
        since: args.since,
        until: args.until,
        namespace: args.namespace.clone(),
    };
    let r = report_lines(lines, &filter, args.top);
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("sigil report: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", r.table(&filter));
    }
    0
}

/// The files' contents in order, or stdin's.
fn read_input(files: &[std::path::PathBuf]) -> Result<String, String> {
    use std::io::Read as _;
    if files.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    let mut text = String::new();
    for f in files {
        let content = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        text.push_str(&content);
        if !content.ends_with('\n') && !content.is_empty() {
            text.push('\n');
        }
    }
    Ok(text)
}
