//! Go-style flags. Consul's users type `-dev`, `-http-port=8501` and `-tag a -tag b`; clap expects `--`. We accept
//! both by rewriting a single-dash long flag to its double-dash form before clap sees it.

/// Rewrites `-flag`/`-flag=value` to `--flag`/`--flag=value`. Single letters (`-h`), negative numbers, a lone `-`
/// (stdin) and everything after `--` are left alone.
pub fn normalize<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let bytes = arg.as_bytes();
        let long_single_dash =
            bytes.len() > 2 && bytes[0] == b'-' && bytes[1].is_ascii_alphabetic();
        if long_single_dash {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Go's `strconv.ParseBool`, which Consul uses for boolean query parameters (`?passing=`, `?enable=`).
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize, parse_go_bool};

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("False"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool(""), None);
    }

    fn n(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(n(&["weft", "agent", "-dev"]), ["weft", "agent", "--dev"]);
        assert_eq!(
            n(&["-http-port=8501", "--node", "x"]),
            ["--http-port=8501", "--node", "x"]
        );
        assert_eq!(
            n(&["-h", "-5", "-", "--", "-raw"]),
            ["-h", "-5", "-", "--", "-raw"]
        );
    }
}
