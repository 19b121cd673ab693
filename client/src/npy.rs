//! Just enough of NumPy's `.npy` format for the CLI demo and the tests: read a 1-D or 2-D array of
//! uint8, float32 or float64 (little-endian, C order) as f32 rows, and write one.
use crate::error::{ClientError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A row-major 2-D array.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows in `range`, as a new matrix.
    pub fn slice_rows(&self, range: std::ops::Range<usize>) -> Matrix {
        Matrix {
            rows: range.len(),
            cols: self.cols,
            values: self.values[range.start * self.cols..range.end * self.cols].to_vec(),
        }
    }
}

fn bad(why: impl Into<String>) -> ClientError {
    ClientError::Invalid(format!("not a readable .npy file: {}", why.into()))
}

/// Parses a 1-D (as one column) or 2-D `.npy` array of dtype `|u1`, `<f4` or `<f8`.
pub fn read(bytes: &[u8]) -> Result<Matrix> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = field(header, "descr").ok_or_else(|| bad("no descr"))?;
    if field(header, "fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad("Fortran order is not supported"));
    }
    let shape = field(header, "shape").ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad shape {shape}"))))
        .collect::<Result<_>>()?;
    let (rows, cols) = match dims[..] {
        [rows, cols] => (rows, cols),
        [rows] => (rows, 1), // a vector reads as one column
        _ => {
            return Err(bad(format!(
                "expected a 1-D or 2-D array, got shape {dims:?}"
            )))
        }
    };
    let data = &bytes[start + header_len..];
    let dtype = descr
        .trim_start_matches(['\'', '"'])
        .split(['\'', '"'])
        .next()
        .unwrap_or("");
    let width = match dtype {
        "|u1" | "u1" => 1,
        "<f4" => 4,
        "<f8" => 8,
        other => return Err(bad(format!("unsupported dtype {other}"))),
    };
    let count = rows
        .checked_mul(cols)
        .filter(|n| n.checked_mul(width).is_some_and(|b| b <= data.len()))
        .ok_or_else(|| bad("data shorter than its shape"))?;
    let values = match width {
        1 => data[..count].iter().map(|&b| b as f32).collect(),
        4 => data[..count * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => data[..count * 8]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
    };
    Ok(Matrix { rows, cols, values })
}

/// The text after `'name':` in a header dict, up to the end of the header.
fn field<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("'{name}':");
    let at = header.find(&key)? + key.len();
    Some(header[at..].trim_start())
}

/// Writes a 2-D uint8 array (values are rounded and clamped to 0..=255).
pub fn write_u8(matrix: &Matrix) -> Vec<u8> {
    let body: Vec<u8> = matrix
        .values
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    with_header("|u1", matrix.rows, matrix.cols, &body)
}

/// Writes a 2-D float32 array.
pub fn write_f32(matrix: &Matrix) -> Vec<u8> {
    let body: Vec<u8> = matrix.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    with_header("<f4", matrix.rows, matrix.cols, &body)
}

fn with_header(descr: &str, rows: usize, cols: usize, body: &[u8]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_u8_and_f32() {
        let m = Matrix {
            rows: 2,
            cols: 3,
            values: vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        };
        let bytes = write_u8(&m);
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        assert_eq!(read(&bytes).unwrap(), m);
        assert_eq!(read(&write_f32(&m)).unwrap(), m);
    }

    #[test]
    fn reads_the_bundled_digits() {
        let m = read(include_bytes!("../../data/digits/digits_binarized.npy")).unwrap();
        assert_eq!((m.rows, m.cols), (1797, 64));
        assert!(m.values.iter().all(|&v| v == 0.0 || v == 1.0));
    }

    #[test]
    fn refuses_garbage() {
        assert!(read(b"hello").is_err());
        let mut truncated = write_u8(&Matrix {
            rows: 4,
            cols: 4,
            values: vec![1.0; 16],
        });
        truncated.truncate(truncated.len() - 3);
        assert!(read(&truncated)
            .unwrap_err()
            .to_string()
            .contains("shorter"));
    }
}
