//! FASTA / A2M multiple sequence alignments for Potts models (Boltzmann-machine DCA).
//!
//! Rules (DESIGN.md): upper-case letters and `-` are match columns; lower-case letters and `.`
//! are insertions and are dropped; whitespace is ignored. The alphabet has q = 21 states in
//! the order of [`PROTEIN_ALPHABET`]: gap first (index 0), then the 20 amino acids in
//! alphabetical one-letter order (`ACDEFGHIKLMNPQRSTVWY` = 1..20), the order adabmDCA and
//! most DCA codes use, so parameters line up with theirs.
//!
//! Upper-case letters outside the alphabet (B, J, O, U, X, Z, ...) are kept as
//! [`UNKNOWN_RESIDUE`] here; the trainer maps them to gap or drops their sequences
//! (`unknown_residues = "gap" | "drop"`), and the notes say how many there were.

use crate::error::EngineError;

/// The 21 states, in index order: gap, then the 20 amino acids.
pub const PROTEIN_ALPHABET: &[u8; 21] = b"-ACDEFGHIKLMNPQRSTVWY";
/// Alphabet size of protein alignments.
pub const PROTEIN_Q: u32 = 21;
/// Marker for an upper-case letter outside the alphabet (stored as NaN in a `Dataset`).
pub const UNKNOWN_RESIDUE: u8 = u8::MAX;

/// What to do with sequences containing letters outside the 20 amino acids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnknownResidues {
    /// Map each unknown letter to the gap state (the default).
    Gap,
    /// Drop every sequence that contains one.
    Drop,
}

impl UnknownResidues {
    pub fn from_name(name: &str) -> Result<Self, EngineError> {
        match name {
            "" | "gap" => Ok(UnknownResidues::Gap),
            "drop" => Ok(UnknownResidues::Drop),
            other => Err(EngineError::invalid(format!(
                "unknown_residues must be \"gap\" or \"drop\", not \"{other}\""
            ))),
        }
    }
}

/// A parsed alignment: `rows` sequences of `cols` match columns, row-major state indices
/// (0..21, or [`UNKNOWN_RESIDUE`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    pub rows: usize,
    pub cols: usize,
    pub states: Vec<u8>,
    /// Number of unknown letters, and of sequences holding at least one.
    pub unknown_residues: usize,
    pub sequences_with_unknown: usize,
    /// Which letters were unknown (sorted, for the notes).
    pub unknown_letters: Vec<u8>,
    /// Insertion characters dropped (lower case and `.`).
    pub insertions_dropped: usize,
}

/// Index of an upper-case letter or gap in [`PROTEIN_ALPHABET`].
fn state_of(byte: u8) -> Option<u8> {
    PROTEIN_ALPHABET
        .iter()
        .position(|&a| a == byte)
        .map(|p| p as u8)
}

/// Parses a FASTA/A2M alignment. `max_rows`, `max_cols` and `max_cells` bound what a client
/// can make us allocate; they are checked while reading, before the data is held.
pub fn parse_alignment(
    bytes: &[u8],
    max_rows: usize,
    max_cols: usize,
    max_cells: usize,
) -> Result<Alignment, EngineError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        EngineError::invalid(format!(
            "the FASTA file is not valid text (UTF-8/ASCII): {e}"
        ))
    })?;
    let mut lookup = [None::<u8>; 256];
    for b in 0..=255u8 {
        lookup[b as usize] = state_of(b);
    }
    let mut align = Alignment {
        rows: 0,
        cols: 0,
        states: Vec::new(),
        unknown_residues: 0,
        sequences_with_unknown: 0,
        unknown_letters: Vec::new(),
        insertions_dropped: 0,
    };
    let mut seen_unknown = [false; 256];
    // The record being read: its header name, first line number, match states so far.
    let mut current: Option<(String, usize)> = None;
    let mut row: Vec<u8> = Vec::new();
    let mut row_unknown = 0usize;

    let finish = |name: &str,
                  line_no: usize,
                  row: &mut Vec<u8>,
                  row_unknown: &mut usize,
                  align: &mut Alignment|
     -> Result<(), EngineError> {
        if row.is_empty() {
            return Err(EngineError::invalid(format!(
                "record \"{name}\" (line {line_no}) has no match columns (upper case or '-')"
            )));
        }
        if align.rows == 0 {
            if row.len() > max_cols {
                return Err(EngineError::invalid(format!(
                    "the alignment has {} match columns, more than the limit of {max_cols}",
                    row.len()
                )));
            }
            align.cols = row.len();
        } else if row.len() != align.cols {
            return Err(EngineError::invalid(format!(
                "ragged alignment: record \"{name}\" (line {line_no}) has {} match columns, \
                 the records before it have {}; every sequence must have the same number of \
                 upper-case letters and '-'",
                row.len(),
                align.cols
            )));
        }
        if align.rows + 1 > max_rows {
            return Err(EngineError::invalid(format!(
                "the alignment has more than {max_rows} sequences (the limit)"
            )));
        }
        if (align.rows + 1) * align.cols > max_cells {
            return Err(EngineError::invalid(format!(
                "the alignment has more than {max_cells} cells (sequences x columns, the limit)"
            )));
        }
        align.states.extend_from_slice(row);
        align.rows += 1;
        if *row_unknown > 0 {
            align.unknown_residues += *row_unknown;
            align.sequences_with_unknown += 1;
        }
        row.clear();
        *row_unknown = 0;
        Ok(())
    };

    for (line_index, raw_line) in text.lines().enumerate() {
        let line_no = line_index + 1;
        let line = raw_line.trim_end_matches('\r');
        if let Some(header) = line.strip_prefix('>') {
            if let Some((name, start)) = current.take() {
                finish(&name, start, &mut row, &mut row_unknown, &mut align)?;
            }
            let name: String = header
                .split_whitespace()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect();
            current = Some((name, line_no));
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, _)) = current.as_ref() else {
            return Err(EngineError::invalid(format!(
                "line {line_no} holds sequence data before the first '>' header; \
                 FASTA records start with a line '>name'"
            )));
        };
        for &b in line.as_bytes() {
            match b {
                b' ' | b'\t' => {}
                b'.' | b'a'..=b'z' => align.insertions_dropped += 1,
                _ => match lookup[b as usize] {
                    Some(s) => row.push(s),
                    None if b.is_ascii_uppercase() => {
                        row.push(UNKNOWN_RESIDUE);
                        row_unknown += 1;
                        seen_unknown[b as usize] = true;
                    }
                    None => {
                        return Err(EngineError::invalid(format!(
                            "record \"{name}\" (line {line_no}) contains the character {:?}; \
                             alignments may hold letters, '-' and '.'",
                            b as char
                        )))
                    }
                },
            }
            if row.len() > max_cols {
                return Err(EngineError::invalid(format!(
                    "record \"{name}\" (line {line_no}) has more than {max_cols} match columns \
                     (the limit)"
                )));
            }
        }
    }
    match current.take() {
        Some((name, start)) => finish(&name, start, &mut row, &mut row_unknown, &mut align)?,
        None => {
            return Err(EngineError::invalid(
                "no FASTA records found: expected lines '>name' followed by sequence lines",
            ))
        }
    }
    align.unknown_letters = (0..=255u8).filter(|&b| seen_unknown[b as usize]).collect();
    Ok(align)
}

impl Alignment {
    /// Human-readable notes on what parsing did (for the dataset's `notes`).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "FASTA/A2M alignment: {} sequences x {} match columns, q = 21 \
             (alphabet \"-ACDEFGHIKLMNPQRSTVWY\", gap = 0); {} insertion characters \
             (lower case and '.') dropped",
            self.rows, self.cols, self.insertions_dropped
        )];
        if self.unknown_residues > 0 {
            notes.push(format!(
                "{} residues outside the 20 amino acids ({}) in {} sequences are marked \
                 unknown: Potts training maps them to gap (unknown_residues = \"gap\", the \
                 default) or drops those sequences (\"drop\")",
                self.unknown_residues,
                String::from_utf8_lossy(&self.unknown_letters),
                self.sequences_with_unknown
            ));
        }
        notes
    }

    /// The states as the f32 values of a categorical `Dataset`: unknown residues become NaN
    /// (`NaN as u8 == 0`, so a consumer that ignores the marker reads a gap).
    pub fn values(&self) -> Vec<f32> {
        self.states
            .iter()
            .map(|&s| {
                if s == UNKNOWN_RESIDUE {
                    f32::NAN
                } else {
                    s as f32
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Alignment, EngineError> {
        parse_alignment(text.as_bytes(), 1000, 1000, 100_000)
    }

    #[test]
    fn insertions_are_dropped_and_states_follow_the_alphabet() {
        let a = parse(">s1 desc\nAC-y..D\n>s2\nW\nYa-A\n\n").unwrap();
        assert_eq!((a.rows, a.cols), (2, 4));
        assert_eq!(a.states, vec![1, 2, 0, 3, 19, 20, 0, 1]);
        assert_eq!(a.insertions_dropped, 4);
        assert_eq!(a.unknown_residues, 0);
        assert_eq!(a.notes().len(), 1);
    }

    #[test]
    fn alphabet_order_is_gap_then_amino_acids() {
        let a = parse(">x\n-ACDEFGHIKLMNPQRSTVWY\n").unwrap();
        assert_eq!(a.states, (0..21).collect::<Vec<u8>>());
    }

    #[test]
    fn unknown_letters_are_marked_and_counted() {
        let a = parse(">a\nAXB-\n>b\nACD-\n>c\nZCDxA\n").unwrap();
        assert_eq!(a.states[1], UNKNOWN_RESIDUE);
        assert_eq!((a.unknown_residues, a.sequences_with_unknown), (3, 2));
        assert_eq!(a.unknown_letters, b"BXZ".to_vec());
        assert!(a.values()[1].is_nan());
        assert!(a.notes()[1].contains("3 residues"), "{:?}", a.notes());
    }

    #[test]
    fn windows_line_endings_and_wrapped_lines() {
        let a = parse(">a\r\nAC\r\nDE\r\n>b\r\nFGHI\r\n").unwrap();
        assert_eq!((a.rows, a.cols), (2, 4));
    }

    #[test]
    fn ragged_rows_are_refused_naming_the_record() {
        let err = parse(">a\nACD\n>bad_one\nAC\n").unwrap_err();
        let EngineError::InvalidInput(msg) = err else {
            panic!()
        };
        assert!(msg.contains("bad_one") && msg.contains("ragged"), "{msg}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        for text in ["", "ACD\n", ">a\n", ">a\nac..\n", ">a\nAC1\n", ">a\nAC*\n"] {
            assert!(
                matches!(parse(text), Err(EngineError::InvalidInput(_))),
                "{text:?} accepted"
            );
        }
        assert!(parse_alignment(&[b'>', b'a', b'\n', 0xff], 10, 10, 100).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let text = ">a\nACDE\n>b\nACDE\n>c\nACDE\n";
        assert!(parse_alignment(text.as_bytes(), 2, 10, 100).is_err());
        assert!(parse_alignment(text.as_bytes(), 10, 3, 100).is_err());
        assert!(parse_alignment(text.as_bytes(), 10, 10, 11).is_err());
        assert!(parse_alignment(text.as_bytes(), 3, 4, 12).is_ok());
    }

    #[test]
    fn bundled_pf00014_parses() {
        let bytes = include_bytes!("../../../data/msa/PF00014.fasta");
        let a = parse_alignment(bytes, 100_000, 10_000, 10_000_000).unwrap();
        assert_eq!((a.rows, a.cols), (4914, 53));
        assert!(a.states.iter().all(|&s| s < 21 || s == UNKNOWN_RESIDUE));
    }
}
