//! Data sets as the engine sees them: a dense row-major `f32` matrix plus what kind of
//! values it holds. Parsers for `.npy` and CSV live in submodules (FASTA alignments are
//! parsed by the Potts side); each checks the caller's size limits before allocating and
//! turns malformed input into `EngineError::InvalidInput` with a message saying what is
//! wrong.

mod csv_format;
mod npy;

use crate::error::{EngineError, Result};

/// File formats a data set can be uploaded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    Npy,
    Csv,
}

impl DataFormat {
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "npy" => Ok(DataFormat::Npy),
            "csv" => Ok(DataFormat::Csv),
            other => Err(EngineError::invalid(format!(
                "unknown data format {other:?}: use npy or csv"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DataFormat::Npy => "npy",
            DataFormat::Csv => "csv",
        }
    }
}

/// What the values of a data set are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Every value is 0 or 1.
    Binary,
    /// Real numbers (finite).
    Real,
    /// Integer states 0..q (alignments).
    Categorical,
}

impl ValueKind {
    pub fn name(&self) -> &'static str {
        match self {
            ValueKind::Binary => "binary",
            ValueKind::Real => "real",
            ValueKind::Categorical => "categorical",
        }
    }
}

/// A parsed data set: `rows` x `cols` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
    pub kind: ValueKind,
    /// Alphabet size of categorical data, else 0.
    pub q: u32,
    /// What preprocessing did (e.g. "header row skipped"), for the user.
    pub notes: Vec<String>,
}

impl Dataset {
    /// Builds a data set from finite values, detecting binary data.
    pub fn from_values(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(EngineError::invalid(format!(
                "data has {} values, expected rows x cols = {rows} x {cols}",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::invalid(format!(
                "data value at row {}, column {} is {} (values must be finite numbers)",
                i / cols.max(1),
                i % cols.max(1),
                values[i]
            )));
        }
        let kind = if values.iter().all(|&v| v == 0.0 || v == 1.0) {
            ValueKind::Binary
        } else {
            ValueKind::Real
        };
        Ok(Dataset {
            rows,
            cols,
            values,
            kind,
            q: 0,
            notes: Vec::new(),
        })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows with the given indices, as a new data set of the same kind.
    pub fn select_rows(&self, indices: &[usize]) -> Dataset {
        let mut values = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            values.extend_from_slice(self.row(i));
        }
        Dataset {
            rows: indices.len(),
            cols: self.cols,
            values,
            kind: self.kind,
            q: self.q,
            notes: self.notes.clone(),
        }
    }
}

/// Size limits a caller (the server) imposes on uploaded data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    pub max_rows: usize,
    pub max_cols: usize,
    pub max_cells: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_rows: 10_000_000,
            max_cols: 1_000_000,
            max_cells: 200_000_000,
        }
    }
}

impl ParseLimits {
    /// Checks a shape against the limits before anything of that size is allocated.
    pub fn check(&self, rows: usize, cols: usize) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Err(EngineError::invalid(format!(
                "data set is empty ({rows} rows x {cols} columns); it needs at least one row and one column"
            )));
        }
        if rows > self.max_rows {
            return Err(EngineError::invalid(format!(
                "data set has {rows} rows, more than the limit of {}",
                self.max_rows
            )));
        }
        if cols > self.max_cols {
            return Err(EngineError::invalid(format!(
                "data set has {cols} columns, more than the limit of {}",
                self.max_cols
            )));
        }
        match rows.checked_mul(cols) {
            Some(cells) if cells <= self.max_cells => Ok(()),
            _ => Err(EngineError::invalid(format!(
                "data set has {rows} x {cols} values, more than the limit of {} values",
                self.max_cells
            ))),
        }
    }
}

/// Parses an uploaded data set.
pub fn parse_dataset(format: DataFormat, bytes: &[u8], limits: &ParseLimits) -> Result<Dataset> {
    match format {
        DataFormat::Npy => npy::parse_npy(bytes, limits),
        DataFormat::Csv => csv_format::parse_csv(bytes, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!(DataFormat::from_name("NPY").unwrap(), DataFormat::Npy);
        assert_eq!(DataFormat::from_name("csv").unwrap(), DataFormat::Csv);
        assert!(matches!(
            DataFormat::from_name("xlsx"),
            Err(EngineError::InvalidInput(_))
        ));
    }

    #[test]
    fn limits_refuse_large_and_empty_shapes() {
        let limits = ParseLimits {
            max_rows: 10,
            max_cols: 10,
            max_cells: 50,
        };
        assert!(limits.check(5, 10).is_ok());
        assert!(limits.check(11, 1).is_err());
        assert!(limits.check(1, 11).is_err());
        assert!(limits.check(10, 10).is_err());
        assert!(limits.check(0, 3).is_err());
        assert!(limits.check(usize::MAX, 2).is_err());
    }

    #[test]
    fn binary_detection() {
        let d = Dataset::from_values(2, 2, vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        assert_eq!(d.kind, ValueKind::Binary);
        let d = Dataset::from_values(1, 2, vec![0.5, 1.0]).unwrap();
        assert_eq!(d.kind, ValueKind::Real);
        assert!(Dataset::from_values(1, 2, vec![f32::NAN, 1.0]).is_err());
        assert!(Dataset::from_values(1, 3, vec![0.0, 1.0]).is_err());
    }
}
