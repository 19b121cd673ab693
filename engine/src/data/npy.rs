//! `.npy` data sets: 2-D arrays of unsigned/signed integers, floats or booleans, C or
//! Fortran order. The header is read first so the shape is checked against the limits
//! before the data are decoded (by `ndarray-npy`).

use super::{Dataset, ParseLimits};
use crate::error::{EngineError, Result};
use ndarray::Array2;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, ReadableElement};

pub(super) fn parse_npy(bytes: &[u8], limits: &ParseLimits) -> Result<Dataset> {
    let header = Header::from_reader(&mut &bytes[..]).map_err(|e| {
        EngineError::invalid(format!(
            "malformed .npy file: could not read its header ({e}); save the array with numpy.save"
        ))
    })?;
    if header.shape.len() != 2 {
        return Err(EngineError::invalid(format!(
            ".npy array has {} dimensions (shape {:?}); a data set must be 2-D (rows x columns)",
            header.shape.len(),
            header.shape
        )));
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    limits.check(rows, cols)?;
    // A plain dtype prints as a quoted Python string, e.g. '<f4'.
    let printed = header.type_descriptor.to_string();
    let descr = printed.trim_matches(|c| c == '\'' || c == '"').to_string();
    // The byte-order character does not matter for the choice; ndarray-npy handles both.
    let code = descr.trim_start_matches(['<', '>', '=', '|']);
    let values: Vec<f32> = match code {
        "u1" => read::<u8>(bytes)?,
        "i1" => read::<i8>(bytes)?,
        "u2" => read::<u16>(bytes)?,
        "i2" => read::<i16>(bytes)?,
        "u4" => read::<u32>(bytes)?,
        "i4" => read::<i32>(bytes)?,
        "u8" => read::<u64>(bytes)?,
        "i8" => read::<i64>(bytes)?,
        "f4" => read::<f32>(bytes)?,
        "f8" => read::<f64>(bytes)?,
        "b1" => read::<bool>(bytes)?,
        _ => {
            return Err(EngineError::invalid(format!(
                ".npy dtype {descr:?} is not supported: use uint8, int, float32, float64 or bool"
            )))
        }
    };
    Dataset::from_values(rows, cols, values)
}

trait ToF32: ReadableElement {
    fn to_f32(&self) -> f32;
}

macro_rules! to_f32_as {
    ($($t:ty),*) => {$(
        impl ToF32 for $t {
            fn to_f32(&self) -> f32 { *self as f32 }
        }
    )*};
}
to_f32_as!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

impl ToF32 for bool {
    fn to_f32(&self) -> f32 {
        if *self {
            1.0
        } else {
            0.0
        }
    }
}

/// Decodes the array; iteration is in logical (row-major) order whatever the file's layout.
fn read<T: ToF32>(bytes: &[u8]) -> Result<Vec<f32>> {
    let array = Array2::<T>::read_npy(bytes).map_err(|e| {
        EngineError::invalid(format!(
            "malformed .npy file: {e} (the data must match the shape and dtype in its header)"
        ))
    })?;
    Ok(array.iter().map(ToF32::to_f32).collect())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_dataset, DataFormat, ValueKind};
    use super::*;
    use ndarray_npy::WriteNpyExt;

    fn npy_bytes<T: ndarray_npy::WritableElement>(a: &Array2<T>) -> Vec<u8> {
        let mut out = Vec::new();
        a.write_npy(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_uint8_and_detects_binary() {
        let a = Array2::from_shape_vec((2, 3), vec![0u8, 1, 1, 0, 0, 1]).unwrap();
        let d = parse_dataset(DataFormat::Npy, &npy_bytes(&a), &ParseLimits::default()).unwrap();
        assert_eq!((d.rows, d.cols), (2, 3));
        assert_eq!(d.values, vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(d.kind, ValueKind::Binary);
    }

    #[test]
    fn reads_floats_and_fortran_order_in_row_major() {
        let a = Array2::from_shape_vec((2, 2), vec![0.5f64, 1.5, 2.5, 3.5]).unwrap();
        let d = parse_dataset(DataFormat::Npy, &npy_bytes(&a), &ParseLimits::default()).unwrap();
        assert_eq!(d.values, vec![0.5, 1.5, 2.5, 3.5]);
        assert_eq!(d.kind, ValueKind::Real);
        let f = a.t().to_owned().reversed_axes(); // same logical array, Fortran layout
        let d = parse_dataset(DataFormat::Npy, &npy_bytes(&f), &ParseLimits::default()).unwrap();
        assert_eq!(d.values, vec![0.5, 1.5, 2.5, 3.5]);
        let i = Array2::from_shape_vec((1, 2), vec![3i64, -1]).unwrap();
        let d = parse_dataset(DataFormat::Npy, &npy_bytes(&i), &ParseLimits::default()).unwrap();
        assert_eq!(d.values, vec![3.0, -1.0]);
    }

    #[test]
    fn refuses_malformed_files() {
        let limits = ParseLimits::default();
        let bad = |bytes: &[u8]| {
            let e = parse_dataset(DataFormat::Npy, bytes, &limits).unwrap_err();
            assert!(matches!(e, EngineError::InvalidInput(_)), "{e:?}");
            e.to_string()
        };
        bad(b"not an npy file at all");
        bad(b"");
        let a = Array2::from_shape_vec((4, 4), vec![1.0f32; 16]).unwrap();
        let full = npy_bytes(&a);
        bad(&full[..full.len() - 3]); // truncated data
        let one_d = ndarray::Array1::from_vec(vec![1u8, 2, 3]);
        let mut out = Vec::new();
        one_d.write_npy(&mut out).unwrap();
        assert!(bad(&out).contains("2-D"));
        let nan = Array2::from_shape_vec((1, 2), vec![f32::NAN, 1.0]).unwrap();
        assert!(bad(&npy_bytes(&nan)).contains("finite"));
    }

    #[test]
    fn refuses_shapes_over_the_limits_before_reading() {
        let a = Array2::from_shape_vec((3, 4), vec![0u8; 12]).unwrap();
        let limits = ParseLimits {
            max_rows: 2,
            max_cols: 100,
            max_cells: 1000,
        };
        let e = parse_dataset(DataFormat::Npy, &npy_bytes(&a), &limits).unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
    }
}
