//! `${VAR}` and `${VAR:-default}` interpolation of raw config text.
//!
//! Interpolation happens on the TOML text before parsing, like vector's
//! `config/vars.rs`, so any string value can use it. `$$` escapes a dollar sign.
//! A variable that is unset and has no default is an error, reported with the
//! others rather than silently becoming an empty string.

/// Replace every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
///
/// Returns the new text, or the list of problems (unset variables, malformed
/// references) with the 1-based line each occurs on.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        // Comments are left alone so that commented-out examples never fail.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push((lineno + 1, "unterminated ${...} reference".to_owned()));
                    out.push_str(&rest[pos..]);
                    rest = "";
                    break;
                };
                let reference = &body[..end];
                let (name, default) = match reference.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (reference, None),
                };
                let valid_name =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    errors.push((
                        lineno + 1,
                        format!("invalid variable name in ${{{reference}}}"),
                    ));
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                        (_, Some(d)) => out.push_str(d),
                        (None, None) => errors.push((
                            lineno + 1,
                            format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
                        )),
                        (Some(v), None) => out.push_str(&v),
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let got = interpolate(
            "x = \"${A}\"\ny = \"${B:-beta}\"\nz = \"${EMPTY:-d}\"\n",
            env,
        )
        .unwrap();
        assert_eq!(got, "x = \"alpha\"\ny = \"beta\"\nz = \"d\"\n");
    }

    #[test]
    fn dollar_escape_and_plain_dollar() {
        assert_eq!(
            interpolate("a = \"$$HOME $x\"", env).unwrap(),
            "a = \"$HOME $x\""
        );
    }

    #[test]
    fn unset_variables_are_all_reported_with_lines() {
        let errs = interpolate("a = \"${NOPE}\"\nb = \"${ALSO_NOPE}\"\n", env).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].0, 1);
        assert_eq!(errs[1].0, 2);
        assert!(errs[0].1.contains("NOPE"));
    }

    #[test]
    fn comments_are_not_interpolated() {
        assert_eq!(interpolate("# ${NOPE}\n", env).unwrap(), "# ${NOPE}\n");
    }
}
