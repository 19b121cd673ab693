//! Timings and a device self-check for the benchmark binary (`examples/backend_bench.rs`).
//! The check compares each device op with the CPU backend on random inputs, so a machine
//! with the binary but no Rust toolchain (the lent GPU) can still verify the kernels.

use std::time::Instant;

use super::device::{cube_dim, cubes_for, CubeRuntime, DeviceArray};
use super::lattice::{self, SpinRule};
use super::matmul::{matmul, Layout, Product};
use super::philox::{draw_kernel, key_launch};
use super::rbm_backend::{CubeBackend, CubeMatrix};
use super::{ais, rbm};
use crate::backend::cpu::{CpuBackend, CpuMatrix};
use crate::backend::{Backend, OptimizerRule, RbmGradient, RbmTensors, UpdateRule, VisibleUnits};
use crate::error::{EngineError, Result};
use crate::rng::RngKey;

fn random(seed: u64, stream: u32, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let key = RngKey::new(seed, 100 + stream, 0);
    (0..n)
        .map(|i| lo + (hi - lo) * key.uniform(i as u32))
        .collect()
}

fn bits(seed: u64, stream: u32, n: usize) -> Vec<f32> {
    random(seed, stream, n, 0.0, 1.0)
        .into_iter()
        .map(|u| (u < 0.5) as u8 as f32)
        .collect()
}

/// Lines of the check and whether all passed.
pub struct CheckReport {
    pub lines: Vec<String>,
    pub passed: bool,
}

impl CheckReport {
    fn record(&mut self, what: &str, error: f64, tolerance: f64) {
        let ok = error <= tolerance;
        self.passed &= ok;
        self.lines.push(format!(
            "{what}: max error {error:.3e} (tolerance {tolerance:.1e}) {}",
            if ok { "ok" } else { "FAIL" }
        ));
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

/// Sample mismatches that are not near ties (|uniform - p| > 1e-5), which must be none.
fn off_tie_mismatches(got: &[f32], want: &[f32], probs: &[f32], key: RngKey) -> usize {
    (0..got.len())
        .filter(|&i| got[i] != want[i] && (key.uniform(i as u32) - probs[i]).abs() > 1e-5)
        .count()
}

struct Pair<R: CubeRuntime> {
    gpu: RbmTensors<CubeMatrix>,
    cpu: RbmTensors<CpuMatrix>,
    _r: std::marker::PhantomData<R>,
}

fn params<R: CubeRuntime>(
    b: &CubeBackend<R>,
    units: VisibleUnits,
    nv: usize,
    nh: usize,
) -> Result<Pair<R>> {
    let cpu = CpuBackend::new();
    let w = random(5, 0, nv * nh, -0.3, 0.3);
    let bv = random(5, 1, nv, -1.0, 1.0);
    let c = random(5, 2, nh, -1.0, 1.0);
    let sigma = random(5, 3, nv, 0.5, 1.5);
    let gaussian = units == VisibleUnits::Gaussian;
    Ok(Pair {
        gpu: RbmTensors {
            units,
            w: b.upload(nv, nh, &w)?,
            b: b.upload(1, nv, &bv)?,
            c: b.upload(1, nh, &c)?,
            sigma: if gaussian {
                Some(b.upload(1, nv, &sigma)?)
            } else {
                None
            },
        },
        cpu: RbmTensors {
            units,
            w: cpu.upload(nv, nh, &w)?,
            b: cpu.upload(1, nv, &bv)?,
            c: cpu.upload(1, nh, &c)?,
            sigma: if gaussian {
                Some(cpu.upload(1, nv, &sigma)?)
            } else {
                None
            },
        },
        _r: std::marker::PhantomData,
    })
}

/// Every RBM op, the generator and the lattice sweep against the CPU backend.
pub fn check_against_cpu<R: CubeRuntime>(b: &CubeBackend<R>) -> Result<CheckReport> {
    let mut report = CheckReport {
        lines: Vec::new(),
        passed: true,
    };
    let client = b.client();
    let cpu = CpuBackend::new();

    // Generator: bit for bit.
    let n = 4097usize;
    let key = RngKey::new(0xDEAD_BEEF_1234, 7, 0x1_0000_0003);
    let (words, uni, nor) = (
        DeviceArray::<u32>::zeros(client, 4 * n),
        DeviceArray::<f32>::zeros(client, n),
        DeviceArray::<f32>::zeros(client, n),
    );
    draw_kernel::launch::<R>(
        client,
        cubes_for(n),
        cube_dim(),
        key_launch(key),
        words.arg(),
        uni.arg(),
        nor.arg(),
        n as u32,
    );
    let words = words.download(client)?;
    let differing = (0..n)
        .filter(|&i| words[4 * i..4 * i + 4] != key.words(i as u32))
        .count();
    report.record("philox words differing", differing as f64, 0.0);

    let (nv, nh, chains) = (97usize, 45usize, 301usize);
    for units in [VisibleUnits::Bernoulli, VisibleUnits::Gaussian] {
        let p = params(b, units, nv, nh)?;
        let v = if units == VisibleUnits::Gaussian {
            random(6, 0, chains * nv, -2.0, 2.0)
        } else {
            bits(6, 0, chains * nv)
        };
        let (gv, cv) = (b.upload(chains, nv, &v)?, cpu.upload(chains, nv, &v)?);
        let (mut gp, mut gs) = (b.zeros(chains, nh)?, b.zeros(chains, nh)?);
        let (mut cp, mut cs) = (cpu.zeros(chains, nh)?, cpu.zeros(chains, nh)?);
        let hk = RngKey::new(3, 3, 1);
        b.sample_hidden(&p.gpu, &gv, 0.8, hk, &mut gp, Some(&mut gs))?;
        cpu.sample_hidden(&p.cpu, &cv, 0.8, hk, &mut cp, Some(&mut cs))?;
        let (gpv, gsv) = (b.download(&gp)?, b.download(&gs)?);
        report.record(
            &format!("{units:?} hidden probabilities"),
            max_abs_diff(&gpv, &cp.data),
            1e-5,
        );
        report.record(
            &format!("{units:?} hidden samples off a tie"),
            off_tie_mismatches(&gsv, &cs.data, &cp.data, hk) as f64,
            0.0,
        );

        let (mut gm, mut gvs) = (b.zeros(chains, nv)?, b.zeros(chains, nv)?);
        let (mut cm, mut cvs) = (cpu.zeros(chains, nv)?, cpu.zeros(chains, nv)?);
        let vk = RngKey::new(3, 4, 1);
        b.sample_visible(&p.gpu, &gs, 0.8, vk, &mut gm, &mut gvs)?;
        cpu.sample_visible(&p.cpu, &cs, 0.8, vk, &mut cm, &mut cvs)?;
        let (gmv, gvv) = (b.download(&gm)?, b.download(&gvs)?);
        report.record(
            &format!("{units:?} visible means"),
            max_abs_diff(&gmv, &cm.data),
            1e-4,
        );
        if units == VisibleUnits::Bernoulli {
            report.record(
                "Bernoulli visible samples off a tie",
                off_tie_mismatches(&gvv, &cvs.data, &cm.data, vk) as f64,
                0.0,
            );
        } else {
            report.record(
                "Gaussian visible samples",
                max_abs_diff(&gvv, &cvs.data),
                1e-3,
            );
        }

        // Gradient (with centering and log-sigma for the Gaussian case) and updates.
        let negv = if units == VisibleUnits::Gaussian {
            random(6, 1, 64 * nv, -2.0, 2.0)
        } else {
            bits(6, 1, 64 * nv)
        };
        let negh = random(6, 2, 64 * nh, 0.0, 1.0);
        let (mu, lambda) = (random(6, 3, nv, 0.0, 1.0), random(6, 4, nh, 0.0, 1.0));
        let gaussian = units == VisibleUnits::Gaussian;
        let mut gg = RbmGradient {
            w: b.zeros(nv, nh)?,
            b: b.zeros(1, nv)?,
            c: b.zeros(1, nh)?,
            log_sigma: if gaussian {
                Some(b.zeros(1, nv)?)
            } else {
                None
            },
        };
        let mut cg = RbmGradient {
            w: cpu.zeros(nv, nh)?,
            b: cpu.zeros(1, nv)?,
            c: cpu.zeros(1, nh)?,
            log_sigma: if gaussian {
                Some(cpu.zeros(1, nv)?)
            } else {
                None
            },
        };
        let (gmu, glam) = (b.upload(1, nv, &mu)?, b.upload(1, nh, &lambda)?);
        let (cmu, clam) = (cpu.upload(1, nv, &mu)?, cpu.upload(1, nh, &lambda)?);
        let (gnv, gnh) = (b.upload(64, nv, &negv)?, b.upload(64, nh, &negh)?);
        let (cnv, cnh) = (cpu.upload(64, nv, &negv)?, cpu.upload(64, nh, &negh)?);
        b.gradient(
            &p.gpu,
            &gv,
            &gp,
            &gnv,
            &gnh,
            Some(crate::backend::Offsets {
                mu: &gmu,
                lambda: &glam,
            }),
            &mut gg,
        )?;
        cpu.gradient(
            &p.cpu,
            &cv,
            &cp,
            &cnv,
            &cnh,
            Some(crate::backend::Offsets {
                mu: &cmu,
                lambda: &clam,
            }),
            &mut cg,
        )?;
        report.record(
            &format!("{units:?} gradient W"),
            max_abs_diff(&b.download(&gg.w)?, &cg.w.data),
            1e-4,
        );
        report.record(
            &format!("{units:?} gradient b"),
            max_abs_diff(&b.download(&gg.b)?, &cg.b.data),
            1e-4,
        );
        report.record(
            &format!("{units:?} gradient c"),
            max_abs_diff(&b.download(&gg.c)?, &cg.c.data),
            1e-4,
        );
        if let (Some(gs), Some(cs)) = (&gg.log_sigma, &cg.log_sigma) {
            report.record(
                "gradient log sigma",
                max_abs_diff(&b.download(gs)?, &cs.data),
                1e-3,
            );
        }
        let ge = b.energies(&p.gpu, &gv, &gs)?;
        let ce = cpu.energies(&p.cpu, &cv, &cs)?;
        let scale = ce.iter().map(|e| e.abs() as f64).fold(1.0, f64::max);
        report.record(
            &format!("{units:?} energies (relative)"),
            max_abs_diff(&ge, &ce) / scale,
            1e-5,
        );
    }
    for (name, optimizer, states) in [
        ("sgd", OptimizerRule::Sgd { momentum: 0.5 }, 1usize),
        (
            "adam",
            OptimizerRule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                t: 4,
            },
            2,
        ),
    ] {
        let rule = UpdateRule {
            learning_rate: 0.01,
            optimizer,
            l1: 1e-4,
            l2: 1e-3,
        };
        let (w0, g) = (random(7, 0, 1000, -1.0, 1.0), random(7, 1, 1000, -1.0, 1.0));
        let s0 = random(7, 2, 1000, 0.0, 0.01);
        let mut gw = b.upload(1, 1000, &w0)?;
        let mut cw = cpu.upload(1, 1000, &w0)?;
        let mut gstate: Vec<CubeMatrix> = (0..states)
            .map(|_| b.upload(1, 1000, &s0))
            .collect::<Result<_>>()?;
        let mut cstate: Vec<CpuMatrix> = (0..states)
            .map(|_| cpu.upload(1, 1000, &s0))
            .collect::<Result<_>>()?;
        b.apply_update(&mut gw, &b.upload(1, 1000, &g)?, &mut gstate, &rule, true)?;
        cpu.apply_update(&mut cw, &cpu.upload(1, 1000, &g)?, &mut cstate, &rule, true)?;
        report.record(
            &format!("{name} update"),
            max_abs_diff(&b.download(&gw)?, &cw.data),
            1e-6,
        );
    }

    // Lattice: two heat-bath sweeps of 3 chains of an 18 x 18 torus against the reference.
    let (size, chains) = (18usize, 3usize);
    let mut want: Vec<i32> = bits(8, 0, chains * size * size)
        .iter()
        .map(|&x| if x > 0.5 { 1 } else { -1 })
        .collect();
    let spins = DeviceArray::upload(client, &want);
    let betas = vec![0.3f32, 0.44, 0.6];
    let dbetas = DeviceArray::upload(client, &betas);
    let mut ties = 0;
    for s in 0..2u64 {
        let keys = [RngKey::new(8, 1, 2 * s), RngKey::new(8, 1, 2 * s + 1)];
        lattice::sweep(
            client,
            &spins,
            &dbetas,
            keys,
            chains,
            size,
            1.0,
            0.1,
            1.0,
            SpinRule::HeatBath,
        );
        ties += lattice::sweep_reference(
            &mut want,
            &betas,
            keys,
            size,
            1.0,
            0.1,
            1.0,
            SpinRule::HeatBath,
        );
    }
    let got = spins.download(client)?;
    let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    report.record(
        &format!("lattice spins differing ({ties} near ties)"),
        differing as f64,
        if ties > 0 { f64::INFINITY } else { 0.0 },
    );

    // Log-sum-exp against f64.
    let x = random(9, 0, 10_001, -50.0, 30.0);
    let (lse, _) = ais::logsumexp(client, &DeviceArray::upload(client, &x))?;
    let max = x.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let want = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    report.record("log-sum-exp", (lse - want).abs(), 1e-5);
    Ok(report)
}

/// FLOP/s of the tiled product at m x n x k (2 m n k per product).
pub fn matmul_flops<R: CubeRuntime>(
    b: &CubeBackend<R>,
    m: usize,
    n: usize,
    k: usize,
    reps: usize,
) -> Result<f64> {
    let client = b.client();
    let a = DeviceArray::upload(client, &random(1, 0, m * k, 0.0, 1.0));
    let w = DeviceArray::upload(client, &random(1, 1, k * n, -0.1, 0.1));
    let out = DeviceArray::<f32>::zeros(client, m * n);
    let p = Product {
        m,
        n,
        k,
        layout: Layout::Plain,
        alpha: 1.0,
        beta: 0.0,
    };
    matmul(client, p, &a, &w, None, &out)?;
    rbm::any_nonfinite(client, &out)?;
    let start = Instant::now();
    for _ in 0..reps {
        matmul(client, p, &a, &w, None, &out)?;
    }
    rbm::any_nonfinite(client, &out)?;
    Ok(2.0 * (m * n * k * reps) as f64 / start.elapsed().as_secs_f64())
}

/// Spin flips (site updates) per nanosecond of heat-bath checkerboard sweeps.
pub fn lattice_flips_per_ns<R: CubeRuntime>(
    b: &CubeBackend<R>,
    size: usize,
    chains: usize,
    sweeps: usize,
) -> Result<f64> {
    let client = b.client();
    let sites = size * size * chains;
    let init: Vec<i32> = bits(2, 0, sites)
        .iter()
        .map(|&x| if x > 0.5 { 1 } else { -1 })
        .collect();
    let spins = DeviceArray::upload(client, &init);
    let betas = DeviceArray::upload(client, &vec![0.44f32; chains]);
    let flag = DeviceArray::<f32>::zeros(client, 1);
    let run = |s: u64| {
        let keys = [RngKey::new(2, 1, 2 * s), RngKey::new(2, 1, 2 * s + 1)];
        lattice::sweep(
            client,
            &spins,
            &betas,
            keys,
            chains,
            size,
            1.0,
            0.0,
            1.0,
            SpinRule::HeatBath,
        );
    };
    run(0);
    rbm::any_nonfinite(client, &flag)?;
    let start = Instant::now();
    for s in 1..=sweeps as u64 {
        run(s);
    }
    rbm::any_nonfinite(client, &flag)?;
    Ok((sites * sweeps) as f64 / start.elapsed().as_nanos() as f64)
}

/// Chain-transitions per second of RBM AIS (hidden step, weight update, visible step).
pub fn ais_transitions_per_s<R: CubeRuntime>(
    b: &CubeBackend<R>,
    nv: usize,
    nh: usize,
    chains: usize,
    steps: usize,
) -> Result<f64> {
    let client = b.client();
    let up = |x: Vec<f32>| DeviceArray::upload(client, &x);
    let w = up(random(3, 0, nv * nh, -0.05, 0.05));
    let bias = up(random(3, 1, nv, -0.5, 0.5));
    let c = up(random(3, 2, nh, -0.5, 0.5));
    let base = up(random(3, 3, nv, -0.5, 0.5));
    let delta = up(random(3, 4, nv, -0.5, 0.5));
    let v = up(bits(3, 5, chains * nv));
    let z = |n| DeviceArray::<f32>::zeros(client, n);
    let (pre_h, terms, h, pre_v, prob_v) = (
        z(chains * nh),
        z(chains * nh),
        z(chains * nh),
        z(chains * nv),
        z(chains * nv),
    );
    let (log_w, carry) = (z(chains), z(chains));
    let step = |k: usize| -> Result<()> {
        let (b0, b1) = ((k - 1) as f32 / steps as f32, k as f32 / steps as f32);
        matmul(
            client,
            Product {
                m: chains,
                n: nh,
                k: nv,
                layout: Layout::Plain,
                alpha: 1.0,
                beta: 0.0,
            },
            &v,
            &w,
            Some(&c),
            &pre_h,
        )?;
        ais::ais_hidden(
            client,
            &pre_h,
            &terms,
            &h,
            RngKey::new(4, 1, k as u64),
            b1,
            b0,
        );
        ais::ais_weight(
            client,
            &terms,
            &v,
            &delta,
            &log_w,
            &carry,
            chains,
            nh,
            nv,
            b1 - b0,
        );
        matmul(
            client,
            Product {
                m: chains,
                n: nv,
                k: nh,
                layout: Layout::TransposedB,
                alpha: 1.0,
                beta: 0.0,
            },
            &h,
            &w,
            Some(&bias),
            &pre_v,
        )?;
        rbm::sample_bernoulli(
            client,
            &pre_v,
            &pre_v,
            &base,
            &prob_v,
            &v,
            RngKey::new(4, 2, k as u64),
            nv,
            b1,
            1.0 - b1,
            false,
            true,
        );
        Ok(())
    };
    step(1)?;
    ais::logsumexp(client, &log_w)?;
    let start = Instant::now();
    for k in 2..=steps + 1 {
        step(k.min(steps))?;
    }
    let (lse, _) = ais::logsumexp(client, &log_w)?;
    if !lse.is_finite() {
        return Err(EngineError::Internal(
            "AIS benchmark produced non-finite weights".into(),
        ));
    }
    Ok((chains * steps) as f64 / start.elapsed().as_secs_f64())
}
