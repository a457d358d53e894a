//! Parsing one sensor sample from a line of text: comma- or whitespace-separated numbers.

/// Parses `line` into exactly `channels` values. `NaN` and `inf` parse (the pipeline rejects them with a
/// precise error); anything else that is not a number is an error naming the column.
pub fn parse_sample(line: &str, channels: usize, out: &mut Vec<f32>) -> Result<(), String> {
    out.clear();
    for (column, cell) in line.split(|c: char| c == ',' || c.is_whitespace()).filter(|c| !c.is_empty()).enumerate() {
        let value = cell.parse::<f32>().map_err(|_| format!("column {}: {cell:?} is not a number", column + 1))?;
        out.push(value);
    }
    if out.len() != channels {
        return Err(format!("{} values, expected {channels}", out.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commas_and_whitespace() {
        let mut out = Vec::new();
        parse_sample("1.5, -2\t3e2", 3, &mut out).unwrap();
        assert_eq!(out, vec![1.5, -2.0, 300.0]);
        parse_sample("NaN,inf", 2, &mut out).unwrap();
        assert!(out[0].is_nan() && out[1].is_infinite());
    }

    #[test]
    fn names_the_bad_column_and_wrong_counts() {
        let mut out = Vec::new();
        assert_eq!(parse_sample("1,x,3", 3, &mut out).unwrap_err(), "column 2: \"x\" is not a number");
        assert_eq!(parse_sample("1,2", 3, &mut out).unwrap_err(), "2 values, expected 3");
    }
}
