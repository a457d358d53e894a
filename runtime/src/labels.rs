//! Class labels as bundles give them: lines of a labels file, or a value of the model's metadata in the forms
//! exporters write (a JSON list, a Python dict of index to name as Ultralytics writes `names`, or lines).

/// The labels of a labels file's `text`: one per line. By default each line is trimmed and blank lines are
/// skipped (so a trailing newline or indentation never makes a label); `verbatim` keeps every line as it is but
/// for its line ending (`\n` or `\r\n`), so that a line holding one space is the label " " (an OCR character
/// list), and only a final empty line after the last newline is dropped.
pub(crate) fn from_lines(text: &str, verbatim: bool) -> Vec<String> {
    if verbatim {
        let text = text.strip_suffix('\n').unwrap_or(text);
        text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned()).collect()
    } else {
        text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect()
    }
}

/// The labels of a metadata value: a JSON list of strings (`["cat", "dog"]`), a Python dict from index to name
/// (`{0: 'person', 1: 'bicycle'}`, indices 0..n in any order), or else lines as [`from_lines`] reads them.
pub(crate) fn from_metadata(value: &str, verbatim: bool) -> Result<Vec<String>, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| format!("a JSON list of strings was expected: {e}"))
    } else if trimmed.starts_with('{') {
        python_dict(trimmed)
    } else {
        Ok(from_lines(value, verbatim))
    }
}

/// `{0: 'a', 1: "b's"}` as `["a", "b's"]`: integer keys 0..n (each once), Python string literals as values.
fn python_dict(text: &str) -> Result<Vec<String>, String> {
    let mut entries: Vec<(usize, String)> = Vec::new();
    let mut rest = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| "a {index: name} dict was expected".to_owned())?
        .trim();
    while !rest.is_empty() {
        let (index, after) = rest.split_once(':').ok_or_else(|| format!("no `:` after {rest:?}"))?;
        let index: usize = index.trim().parse().map_err(|_| format!("the key {:?} is not an index", index.trim()))?;
        let (name, after) = python_string(after.trim_start())?;
        entries.push((index, name));
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if after.is_empty() => after,
            None => return Err(format!("expected `,` before {after:?}")),
        };
    }
    entries.sort_by_key(|(index, _)| *index);
    if entries.iter().enumerate().any(|(position, (index, _))| position != *index) {
        return Err("the indices are not 0, 1, 2, ... each once".to_owned());
    }
    Ok(entries.into_iter().map(|(_, name)| name).collect())
}

/// A Python string literal at the start of `text` (`'...'` or `"..."`, with backslash escapes) and what follows.
fn python_string(text: &str) -> Result<(String, &str), String> {
    let quote =
        text.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or_else(|| format!("{text:?}: no string"))?;
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c if c == quote => return Ok((value, &text[at + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("{text:?}: unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_trimmed_and_blank_ones_skipped_unless_verbatim() {
        let text = "cat\n  dog \r\n\n \nbird";
        assert_eq!(from_lines(text, false), ["cat", "dog", "bird"]);
        assert_eq!(from_lines(text, true), ["cat", "  dog ", "", " ", "bird"]);
        // A final newline ends the last line; it does not add an empty label.
        assert_eq!(from_lines("a\n \n", true), ["a", " "]);
        assert_eq!(from_lines("a\r\nb\r\n", true), ["a", "b"]);
    }

    #[test]
    fn metadata_takes_json_lists_python_dicts_and_lines() {
        assert_eq!(from_metadata(r#"["a b", "c"]"#, false).unwrap(), ["a b", "c"]);
        let dict = r#"{1: 'traffic light', 0: "person's", 2: 'a\'b'}"#;
        assert_eq!(from_metadata(dict, false).unwrap(), ["person's", "traffic light", "a'b"]);
        assert_eq!(from_metadata("x\ny\n \n", true).unwrap(), ["x", "y", " "]);
        assert_eq!(from_metadata("x\ny\n \n", false).unwrap(), ["x", "y"]);
        for bad in ["[1, 2]", "{0: 'a', 2: 'b'}", "{0: 'a' 1: 'b'}", "{a: 'b'}", "{0: 'a}", "{0 'a'}"] {
            assert!(from_metadata(bad, false).is_err(), "{bad}");
        }
    }
}
