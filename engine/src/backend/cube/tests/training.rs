//! Potts and lattice training with backend = wgpu against backend = cpu, through the
//! `Trainer` facade: the device runs the chains' sweeps (the negative phase), the host the
//! rest (the same code on both backends), so the two agree when their chains do.
//!
//! The comparison is of the checkpoints' contents, bit for bit: parameters, optimizer
//! state, every chain, the RNG counters and the tempering statistics (a checkpoint names
//! no backend; its bytes are not compared because the metadata's order is not fixed).
//! Bounds, and why they are exact:
//! * Lattice: the device compares the CPU's Philox words with the CPU's integer
//!   thresholds (computed on the host in both cases), so every flip is the CPU's and the
//!   trained J, h are bit-identical (bound 0).
//! * Potts: the device sums the local fields afresh in f32 (the CPU updates them
//!   incrementally) and uses the device's exp (the CPU a polynomial, relative error < 2e-7),
//!   so the heat-bath weights and Metropolis ratios differ by relative
//!   delta <~ (L + 4) 2^-24 + 2e-7 < 1e-6 here (L = 6, |e| of order 1). A draw differs only
//!   if its uniform falls within delta of one of the q - 1 cumulative boundaries:
//!   probability <= 2 (q - 1) delta = 6e-6 per draw, so <= 0.06 expected differing draws
//!   over the <= 8,640 draws of one run below. Without one, the chains are identical and
//!   the host's gradient steps give bit-identical parameters (bound 0); the runs use fixed
//!   seeds, so the outcome is the same on every run of the same device.

use crate::backend::BackendKind;
use crate::data::{Dataset, ValueKind};
use crate::error::EngineError;
use crate::rng::RngKey;
use crate::spec::{ModelSpec, TrainSpec};
use crate::tensors::TensorReader;
use crate::train::Trainer;
use std::collections::BTreeMap;

/// `rows` sequences of L = 6 sites, q = 4: site 0 uniform, each next site copies its left
/// neighbour with probability 0.6 (so the data have couplings to learn).
fn potts_data(rows: usize, q: u32) -> Dataset {
    let (l, key) = (6usize, RngKey::new(31, 5, 0));
    let mut values = Vec::with_capacity(rows * l);
    for r in 0..rows {
        let mut prev = 0u32;
        for i in 0..l {
            let w = key.words((r * l + i) as u32);
            let fresh = (((w[1] >> 8) as u64 * q as u64) >> 24) as u32;
            let s = if i > 0 && crate::rng::uniform_from_bits(w[0]) < 0.6 {
                prev
            } else {
                fresh
            };
            values.push(s as f32);
            prev = s;
        }
    }
    Dataset {
        rows,
        cols: l,
        values,
        kind: ValueKind::Categorical,
        q,
        notes: vec![],
    }
}

/// `rows` 8 x 8 configurations, each spin +1 with probability 0.6.
fn lattice_data(rows: usize) -> Dataset {
    let key = RngKey::new(32, 5, 0);
    let values = (0..rows * 64)
        .map(|i| {
            if key.uniform(i as u32) < 0.6 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    Dataset {
        rows,
        cols: 64,
        values,
        kind: ValueKind::Real,
        q: 0,
        notes: vec![],
    }
}

fn potts_spec() -> ModelSpec {
    ModelSpec {
        model_type: "potts".into(),
        reweight_identity: Some(0.0),
        ..Default::default()
    }
}

fn lattice_spec() -> ModelSpec {
    ModelSpec {
        model_type: "lattice_ising".into(),
        ..Default::default()
    }
}

fn epochs(t: &mut Trainer, n: usize) {
    for _ in 0..n {
        t.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
    }
}

/// A checkpoint's metadata and tensors (shape and bit patterns), in name order.
type Contents = (
    BTreeMap<String, String>,
    BTreeMap<String, (Vec<usize>, Vec<u32>)>,
);

fn contents(bytes: &[u8]) -> Contents {
    let file = TensorReader::parse(bytes, "a checkpoint").unwrap();
    let tensors = file
        .names()
        .into_iter()
        .map(|name| {
            let shape = file.shape(&name).unwrap();
            let bits = file
                .f32(&name, None)
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (name, (shape, bits))
        })
        .collect();
    (file.metadata().clone(), tensors)
}

/// Trains `total` epochs on the CPU, and on wgpu `split` epochs, a checkpoint, a resume on
/// wgpu and the rest; the checkpoints must be the same bytes, and the model files the same
/// parameters (their metadata name the backend).
fn check(model: &ModelSpec, train: &TrainSpec, data: &Dataset, split: usize, total: usize) {
    let mut cpu = Trainer::new(model, train, 7, data.clone(), BackendKind::Cpu).unwrap();
    epochs(&mut cpu, total);
    let mut gpu = Trainer::new(model, train, 7, data.clone(), BackendKind::Wgpu).unwrap();
    epochs(&mut gpu, split);
    let bytes = gpu.checkpoint().unwrap();
    let mut gpu =
        Trainer::resume(model, train, 7, data.clone(), BackendKind::Wgpu, &bytes).unwrap();
    epochs(&mut gpu, total - split);
    assert!(gpu.is_finished());
    assert!(
        contents(&cpu.checkpoint().unwrap()) == contents(&gpu.checkpoint().unwrap()),
        "{} {train:?}: wgpu and cpu training differ",
        model.model_type
    );
    let (cpu_file, gpu_file) = (cpu.model_file().unwrap(), gpu.model_file().unwrap());
    if model.model_type == "potts" {
        let (a, b) = (
            crate::potts::file::from_bytes(&cpu_file).unwrap(),
            crate::potts::file::from_bytes(&gpu_file).unwrap(),
        );
        assert_eq!(a, b);
    } else {
        let (a, b) = (
            crate::lattice::file::from_bytes(&cpu_file).unwrap(),
            crate::lattice::file::from_bytes(&gpu_file).unwrap(),
        );
        assert_eq!(a, b);
    }
}

/// pcd (gibbs, sgd momentum), cd (gibbs) and pt (metropolis, adam, 2 replicas): the
/// parameters after 3 epochs on wgpu (2 + resume + 1) equal the CPU's (see the module docs
/// for the bound).
#[test]
fn potts_training_on_wgpu_matches_cpu() {
    let data = potts_data(80, 4);
    let base = TrainSpec {
        chains: Some(40),
        k: Some(4),
        epochs: Some(3),
        learning_rate: Some(0.05),
        ..Default::default()
    };
    for train in [
        TrainSpec {
            momentum: Some(0.5),
            ..base.clone()
        },
        TrainSpec {
            method: "cd".into(),
            ..base.clone()
        },
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 1.0],
            optimizer: "adam".into(),
            sampler: "metropolis".into(),
            ..base.clone()
        },
    ] {
        check(&potts_spec(), &train, &data, 2, 3);
    }
}

/// pcd (metropolis), cd (heat bath) and pt (heat bath, 2 replicas) on an 8 x 8 torus:
/// bit-identical J, h, chains and counters after 3 epochs on wgpu (2 + resume + 1).
#[test]
fn lattice_training_on_wgpu_matches_cpu() {
    let data = lattice_data(40);
    let base = TrainSpec {
        chains: Some(20),
        k: Some(5),
        epochs: Some(3),
        learning_rate: Some(0.1),
        ..Default::default()
    };
    for train in [
        base.clone(),
        TrainSpec {
            method: "cd".into(),
            sampler: "gibbs".into(),
            ..base.clone()
        },
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 1.0],
            sampler: "gibbs".into(),
            ..base.clone()
        },
    ] {
        check(&lattice_spec(), &train, &data, 2, 3);
    }
}

/// An alphabet larger than the device kernel holds is refused before any work, saying
/// what to do.
#[test]
fn potts_on_wgpu_refuses_large_alphabets() {
    let data = potts_data(20, 33);
    let train = TrainSpec {
        epochs: Some(1),
        ..Default::default()
    };
    match Trainer::new(&potts_spec(), &train, 1, data, BackendKind::Wgpu) {
        Err(EngineError::InvalidInput(m)) => assert!(m.contains("backend = \"cpu\""), "{m}"),
        other => panic!("q = 33 on wgpu: {:?}", other.map(|_| ())),
    }
}
