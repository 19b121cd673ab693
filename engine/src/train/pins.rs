//! Pins of trained models' bytes: a short seeded training of each family through the public
//! [`Trainer`] on the cpu backend must give exactly the model file it gave when the pins were
//! taken. Refactors of the engine (issue 21: one engine shape for every model family) must keep
//! same seeds giving the same models bit for bit; these tests say so before and after.
//!
//! The pins hold under every `EBM_CPU_ISA` cap (native AVX-512, `avx2`, `portable`; measured,
//! not assumed: at these sizes the three give the same bits), so CI's three runs check them.

use super::Trainer;
use crate::backend::BackendKind;
use crate::data::{Dataset, ValueKind};
use crate::spec::{ModelSpec, TrainSpec};

/// FNV-1a (64 bit) of `bytes`: a fixed, documented hash, so a pin is one number.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A deterministic `rows x cols` table: value `f(r, c)` from a small integer hash, so the
/// data does not depend on any generator the engine may change.
fn table(rows: usize, cols: usize, kind: ValueKind, q: u32, f: impl Fn(u32) -> f32) -> Dataset {
    let values = (0..rows * cols)
        .map(|i| f((i as u32).wrapping_mul(2_654_435_761) >> 7))
        .collect();
    Dataset {
        rows,
        cols,
        values,
        kind,
        q,
        notes: vec![],
    }
}

/// The model file of a full training of `model` with `train` (seed 7) on `data`, cpu backend.
fn trained(model: ModelSpec, train: TrainSpec, data: Dataset) -> Vec<u8> {
    let mut t = Trainer::new(&model, &train, 7, data, BackendKind::Cpu).unwrap();
    while !t.is_finished() {
        t.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
    }
    t.model_file().unwrap()
}

/// The hash of what a model file says: each tensor (sorted by name) with its dtype, shape
/// and little-endian data, then the metadata sorted by key. Not the file's raw bytes:
/// safetensors writes the header's entries in a `HashMap`'s order, which varies run to run.
fn content_hash(file: &[u8]) -> u64 {
    let (_, header) = safetensors::SafeTensors::read_metadata(file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(file).unwrap();
    let mut text = Vec::new();
    let mut names = tensors.names();
    names.sort();
    for name in names {
        let t = tensors.tensor(name).unwrap();
        text.extend(format!("{name} {:?} {:?}\n", t.dtype(), t.shape()).bytes());
        text.extend(t.data());
    }
    let meta: std::collections::BTreeMap<_, _> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    text.extend(format!("{meta:?}").bytes());
    fnv1a(&text)
}

fn assert_pinned(name: &str, file: &[u8], pin: u64) {
    let hash = content_hash(file);
    assert_eq!(
        hash, pin,
        "{name}: model content hash {hash:#018x} differs from the pin {pin:#018x}"
    );
}

#[test]
fn bernoulli_rbm_model_bytes_are_pinned() {
    let model = ModelSpec {
        model_type: "bernoulli_rbm".into(),
        hidden: Some(8),
        ..Default::default()
    };
    let train = TrainSpec {
        method: "pcd".into(),
        epochs: Some(2),
        batch_size: Some(16),
        chains: Some(16),
        learning_rate: Some(0.05),
        ..Default::default()
    };
    let data = table(96, 20, ValueKind::Binary, 0, |h| (h % 3 == 0) as u32 as f32);
    assert_pinned(
        "bernoulli_rbm",
        &trained(model, train, data),
        0xe2a9_d93e_416f_2be4,
    );
}

#[test]
fn gaussian_rbm_model_bytes_are_pinned() {
    let model = ModelSpec {
        model_type: "gaussian_rbm".into(),
        hidden: Some(6),
        ..Default::default()
    };
    let train = TrainSpec {
        method: "cd".into(),
        epochs: Some(2),
        batch_size: Some(16),
        learning_rate: Some(0.01),
        ..Default::default()
    };
    let data = table(96, 12, ValueKind::Real, 0, |h| {
        (h % 1000) as f32 / 250.0 - 2.0
    });
    assert_pinned(
        "gaussian_rbm",
        &trained(model, train, data),
        0xe248_1927_30fa_8d65,
    );
}

fn potts(method: &str, betas: Vec<f64>) -> Vec<u8> {
    let model = ModelSpec {
        model_type: "potts".into(),
        reweight_identity: Some(0.0),
        ..Default::default()
    };
    let train = TrainSpec {
        method: method.into(),
        betas,
        epochs: Some(3),
        chains: Some(32),
        k: Some(2),
        ..Default::default()
    };
    let data = table(80, 6, ValueKind::Categorical, 3, |h| (h % 3) as f32);
    trained(model, train, data)
}

#[test]
fn potts_model_bytes_are_pinned() {
    assert_pinned("potts", &potts("", vec![]), 0x4d0a_5597_7de8_d4a4);
}

#[test]
fn potts_tempered_model_bytes_are_pinned() {
    assert_pinned(
        "potts pt",
        &potts("pt", vec![0.6, 0.8, 1.0]),
        0x0e92_f3e7_9ec5_d5c1,
    );
}

fn lattice(method: &str, betas: Vec<f64>) -> Vec<u8> {
    let model = ModelSpec {
        model_type: "lattice_ising".into(),
        ..Default::default()
    };
    let train = TrainSpec {
        method: method.into(),
        betas,
        epochs: Some(3),
        chains: Some(16),
        k: Some(2),
        ..Default::default()
    };
    let data = table(40, 16, ValueKind::Real, 0, |h| {
        if h % 5 < 3 {
            1.0
        } else {
            -1.0
        }
    });
    trained(model, train, data)
}

#[test]
fn lattice_ising_model_bytes_are_pinned() {
    assert_pinned("lattice_ising", &lattice("", vec![]), 0x06c7_8feb_ef6d_0bfc);
}

#[test]
fn lattice_ising_tempered_model_bytes_are_pinned() {
    assert_pinned(
        "lattice_ising pt",
        &lattice("pt", vec![0.6, 0.8, 1.0]),
        0x4c9b_a3fb_5873_0b7f,
    );
}
