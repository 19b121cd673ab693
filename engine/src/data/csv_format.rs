//! CSV data sets: numbers separated by commas, one row per record, with an optional
//! header row (detected when the first record is not all numbers).

use super::{Dataset, ParseLimits};
use crate::error::{EngineError, Result};

pub(super) fn parse_csv(bytes: &[u8], limits: &ParseLimits) -> Result<Dataset> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut values: Vec<f32> = Vec::new();
    let mut cols = 0usize;
    let mut rows = 0usize;
    let mut notes = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            EngineError::invalid(format!(
                "malformed CSV: {e} (expected UTF-8 numbers separated by commas)"
            ))
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() == 1 && record[0].is_empty() {
            continue; // blank line
        }
        if first {
            first = false;
            cols = record.len();
            limits.check(1, cols)?;
            if record.iter().any(|f| f.parse::<f64>().is_err()) {
                notes.push(format!("header row skipped ({} columns)", cols));
                continue;
            }
        }
        if record.len() != cols {
            return Err(EngineError::invalid(format!(
                "malformed CSV: line {line} has {} fields, but the data have {cols} columns",
                record.len()
            )));
        }
        rows += 1;
        limits.check(rows, cols)?;
        for (j, field) in record.iter().enumerate() {
            let v: f32 = field.parse().map_err(|_| {
                EngineError::invalid(format!(
                    "malformed CSV: line {line}, column {}: {field:?} is not a number",
                    j + 1
                ))
            })?;
            if !v.is_finite() {
                return Err(EngineError::invalid(format!(
                    "malformed CSV: line {line}, column {}: {field:?} is not a finite number",
                    j + 1
                )));
            }
            values.push(v);
        }
    }
    limits.check(rows, cols)?;
    let mut d = Dataset::from_values(rows, cols, values)?;
    d.notes = notes;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::super::{parse_dataset, DataFormat, ValueKind};
    use super::*;

    fn parse(text: &str) -> Result<Dataset> {
        parse_dataset(DataFormat::Csv, text.as_bytes(), &ParseLimits::default())
    }

    #[test]
    fn reads_numbers_with_and_without_header() {
        let d = parse("0,1,1\n1,0,0\n").unwrap();
        assert_eq!((d.rows, d.cols, d.kind), (2, 3, ValueKind::Binary));
        let d = parse("a, b\n 0.5, 2\n\n-1e-3,4\n").unwrap();
        assert_eq!((d.rows, d.cols, d.kind), (2, 2, ValueKind::Real));
        assert_eq!(d.values, vec![0.5, 2.0, -0.001, 4.0]);
        assert_eq!(d.notes.len(), 1);
    }

    #[test]
    fn refuses_malformed_csv_with_the_place() {
        let e = parse("1,2\n3\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("1,2\n3,x\n").unwrap_err().to_string();
        assert!(e.contains("\"x\""), "{e}");
        let e = parse("1,2\n3,nan\n").unwrap_err().to_string();
        assert!(e.contains("finite"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("x,y\n").is_err()); // header only
        assert!(parse_dataset(
            DataFormat::Csv,
            &[0xff, 0xfe, 0x31],
            &ParseLimits::default()
        )
        .is_err());
    }

    #[test]
    fn refuses_too_many_rows() {
        let limits = ParseLimits {
            max_rows: 2,
            max_cols: 10,
            max_cells: 100,
        };
        let e = parse_dataset(DataFormat::Csv, b"1\n2\n3\n", &limits).unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
    }
}
