//! AIS throughput of the estimator chains (`estimate_log_z`'s hot loop) per backend:
//! chain-transitions per second = chains x annealing steps / wall time of `forward_ais`,
//! for a Bernoulli and a Gaussian RBM, a lattice Ising model and a Potts model (PF00014's
//! size: 53 sites, q = 21). The CPU rows use the CPU chains (`estimate::chains::*`); the
//! wgpu/cuda rows the device
//! chains (`backend::cube::chains::*`), whose log-weights stay on the device between the
//! driver's ~200 checks.
//!
//! Usage: estimator_bench [--backends cpu,wgpu,cuda] [--small] [--gemm GFLOPS] [--out FILE]
//! `--small` uses fewer steps (software renderers such as lavapipe). `--gemm`: the machine's
//! measured GEMM rate, for the RBM rows' share of it (two visible x hidden products per
//! chain-transition, counted as dense FLOPs). Prints a Markdown table. Numbers taken on a
//! shared or loaded machine say so in their caption.

use std::time::Instant;

use ebm_engine::error::EngineError;
use ebm_engine::estimate::ais::{forward_ais, AnnealingPath, Hooks};
use ebm_engine::estimate::chains::gaussian::{GaussianRbmChains, GaussianRbmParams};
use ebm_engine::estimate::chains::lattice::{LatticeChains, LatticeParams};
use ebm_engine::estimate::chains::potts::{PottsChains, PottsParams};
use ebm_engine::estimate::chains::rbm::{RbmChains, RbmParams};
use ebm_engine::estimate::schedule::linear_schedule;
use ebm_engine::rng::{RngKey, RngStream};

fn random(seed: u64, stream: u32, n: usize, sd: f32) -> Vec<f32> {
    let key = RngKey::new(seed, stream, 0);
    (0..n).map(|i| sd * key.normal(i as u32)).collect()
}

fn rbm(visible: usize, hidden: usize) -> RbmParams {
    RbmParams {
        visible,
        hidden,
        weights: random(1, 0, visible * hidden, 0.05),
        visible_bias: random(1, 1, visible, 0.5),
        hidden_bias: random(1, 2, hidden, 0.5),
    }
}

fn gaussian(visible: usize, hidden: usize) -> GaussianRbmParams {
    GaussianRbmParams {
        rbm: rbm(visible, hidden),
        sigma: vec![1.0; visible],
        transform: None,
    }
}

fn potts(sites: usize, q: usize) -> PottsParams {
    let lq = sites * q;
    PottsParams {
        sites,
        q,
        couplings: random(2, 0, lq * lq, 0.05),
        fields: random(2, 1, lq, 0.5),
    }
}

/// One model and size of the table.
#[derive(Clone, Copy)]
enum Case {
    Rbm(usize, usize),
    Gaussian(usize, usize),
    Lattice(usize),
    Potts(usize, usize),
}

impl Case {
    fn describe(&self) -> (String, String) {
        match *self {
            Case::Rbm(v, h) => ("bernoulli_rbm AIS".into(), format!("{v}x{h}")),
            Case::Gaussian(v, h) => ("gaussian_rbm AIS".into(), format!("{v}x{h}")),
            Case::Lattice(l) => ("lattice_ising AIS".into(), format!("L={l}")),
            Case::Potts(l, q) => ("potts AIS".into(), format!("L={l}, q={q}")),
        }
    }

    /// Dense FLOPs of one chain-transition where it is two products (RBMs).
    fn flops(&self) -> Option<f64> {
        match *self {
            Case::Rbm(v, h) | Case::Gaussian(v, h) => Some(4.0 * (v * h) as f64),
            _ => None,
        }
    }
}

/// Chain-transitions per second of `steps` AIS steps, after a 2-step warm-up run (which
/// compiles the device kernels).
fn rate(path: &mut dyn AnnealingPath, steps: usize) -> Result<f64, EngineError> {
    let stop = || false;
    let mut progress = |_: f64| {};
    let mut hooks = Hooks {
        should_stop: &stop,
        progress: &mut progress,
    };
    let mut rng = RngStream::new(3, 1);
    forward_ais(path, &linear_schedule(2), &mut rng, &mut hooks)?;
    let start = Instant::now();
    let est = forward_ais(path, &linear_schedule(steps), &mut rng, &mut hooks)?;
    let seconds = start.elapsed().as_secs_f64();
    if !est.log_z.is_finite() {
        return Err(EngineError::Internal("non-finite estimate".into()));
    }
    Ok((path.chains() * steps) as f64 / seconds)
}

fn cpu_path(case: Case, chains: usize) -> Result<Box<dyn AnnealingPath>, EngineError> {
    Ok(match case {
        Case::Rbm(v, h) => {
            let p = rbm(v, h);
            let base = p.visible_bias.clone();
            Box::new(RbmChains::new(p, base, chains)?)
        }
        Case::Gaussian(v, h) => Box::new(GaussianRbmChains::new(gaussian(v, h), chains)?),
        Case::Lattice(l) => Box::new(LatticeChains::new(
            LatticeParams {
                size: l,
                coupling: 0.4,
                field: 0.0,
            },
            chains,
        )?),
        Case::Potts(l, q) => Box::new(PottsChains::new(potts(l, q), chains)?),
    })
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn device_path<R: ebm_engine::backend::cube::CubeRuntime>(
    case: Case,
    chains: usize,
) -> Result<Box<dyn AnnealingPath>, EngineError> {
    use ebm_engine::backend::cube::chains::{CubeLatticeChains, CubePottsChains, CubeRbmChains};
    use ebm_engine::backend::cube::gaussian_chains::CubeGaussianRbmChains;
    let client = R::shared_client()?;
    Ok(match case {
        Case::Rbm(v, h) => {
            let p = rbm(v, h);
            let base = p.visible_bias.clone();
            Box::new(CubeRbmChains::<R>::new(client, p, base, chains)?)
        }
        Case::Gaussian(v, h) => Box::new(CubeGaussianRbmChains::<R>::new(
            client,
            gaussian(v, h),
            chains,
        )?),
        Case::Lattice(l) => Box::new(CubeLatticeChains::<R>::new(
            client,
            LatticeParams {
                size: l,
                coupling: 0.4,
                field: 0.0,
            },
            chains,
        )?),
        Case::Potts(l, q) => Box::new(CubePottsChains::<R>::new(client, potts(l, q), chains)?),
    })
}

fn make_path(
    backend: &str,
    case: Case,
    chains: usize,
) -> Result<Box<dyn AnnealingPath>, EngineError> {
    match backend {
        "cpu" => cpu_path(case, chains),
        #[cfg(feature = "wgpu")]
        "wgpu" => device_path::<cubecl::wgpu::WgpuRuntime>(case, chains),
        #[cfg(feature = "cuda")]
        "cuda" => device_path::<cubecl::cuda::CudaRuntime>(case, chains),
        other => Err(EngineError::InvalidInput(format!(
            "backend {other} is not built in (cargo features wgpu/cuda)"
        ))),
    }
}

fn main() {
    let mut backends = vec!["cpu".to_string()];
    let mut small = false;
    let mut out: Option<String> = None;
    let mut gemm: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backends" => {
                backends = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            }
            "--small" => small = true,
            "--out" => out = args.next(),
            "--gemm" => gemm = args.next().and_then(|g| g.parse().ok()),
            "-h" | "--help" => {
                println!(
                    "estimator_bench [--backends cpu,wgpu,cuda] [--small] [--gemm GFLOPS] [--out FILE]"
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    // (case, chains, steps)
    let cases: Vec<(Case, usize, usize)> = if small {
        vec![
            (Case::Rbm(784, 500), 100, 20),
            (Case::Rbm(784, 500), 1000, 5),
            (Case::Gaussian(784, 500), 100, 20),
            (Case::Lattice(32), 100, 50),
            (Case::Lattice(64), 1000, 10),
            (Case::Potts(53, 21), 100, 3),
        ]
    } else {
        vec![
            (Case::Rbm(784, 500), 100, 200),
            (Case::Rbm(784, 500), 1000, 50),
            (Case::Rbm(784, 500), 10_000, 10),
            (Case::Gaussian(784, 500), 100, 200),
            (Case::Gaussian(784, 500), 1000, 50),
            (Case::Lattice(32), 1000, 200),
            (Case::Lattice(64), 1000, 100),
            (Case::Lattice(128), 1000, 50),
            (Case::Potts(53, 21), 1000, 20),
        ]
    };
    let mut table = String::from(
        "| backend | estimator | size | chains | steps | chain-transitions/s | dense GFLOP/s (share of GEMM rate) |\n|---|---|---|---|---|---|---|\n",
    );
    let mut failed = false;
    for backend in &backends {
        for &(case, chains, steps) in &cases {
            let (what, size) = case.describe();
            match make_path(backend, case, chains).and_then(|mut p| rate(p.as_mut(), steps)) {
                Ok(r) => {
                    let share = match (case.flops(), gemm) {
                        (Some(f), Some(g)) => {
                            format!("{:.1} ({:.0}%)", r * f / 1e9, 100.0 * r * f / 1e9 / g)
                        }
                        (Some(f), None) => format!("{:.1}", r * f / 1e9),
                        (None, _) => "not GEMM-shaped".into(),
                    };
                    let row = format!(
                        "| {backend} | {what} | {size} | {chains} | {steps} | {r:.0} | {share} |\n"
                    );
                    eprint!("{row}");
                    table += &row;
                }
                Err(e) => {
                    eprintln!("{backend} {what} {size}: {e}");
                    failed = true;
                }
            }
        }
    }
    println!("{table}");
    if let Some(path) = out {
        if let Err(e) = std::fs::write(&path, &table) {
            eprintln!("cannot write {path}: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
