//! Backend benchmark and device self-check (issue 5). Per backend: RBM block-Gibbs sweeps
//! per second at 784 x 500 (1k and 10k chains), the tiled matmul's FLOP/s, lattice Ising
//! spin flips per nanosecond (checkerboard heat-bath), and RBM AIS chain-transitions per
//! second. `--check` first compares every device op with the CPU backend (the same checks
//! as the unit tests, for machines that have the binary but no Rust toolchain).
//!
//! Usage: backend_bench [--backends cpu,wgpu,cuda] [--small] [--check] [--out FILE]
//! `--small` shrinks the lattice and repetition counts for software renderers (lavapipe).
//! Prints a Markdown table; `--out` also writes it to a file.

use std::time::Instant;

use ebm_engine::backend::cpu::CpuBackend;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use ebm_engine::backend::cube::{bench as cube_bench, CubeBackend, CubeRuntime};
use ebm_engine::backend::{Backend, RbmTensors, VisibleUnits};
use ebm_engine::rng::RngKey;

struct Args {
    backends: Vec<String>,
    small: bool,
    check: bool,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backends: vec!["cpu".into()],
        small: false,
        check: false,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backends" => {
                let list = it.next().ok_or("--backends needs a list, e.g. cpu,wgpu")?;
                args.backends = list.split(',').map(|s| s.trim().to_string()).collect();
            }
            "--small" => args.small = true,
            "--check" => args.check = true,
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?),
            "-h" | "--help" => {
                println!(
                    "backend_bench [--backends cpu,wgpu,cuda] [--small] [--check] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// A result row of the table.
pub struct Row {
    pub backend: String,
    pub what: String,
    pub size: String,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

fn random(seed: u64, stream: u32, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let key = RngKey::new(seed, stream, 0);
    (0..n)
        .map(|i| lo + (hi - lo) * key.uniform(i as u32))
        .collect()
}

/// Gibbs sweeps per second of an RBM on backend `b` (Bernoulli units, PCD-style chains).
fn gibbs_rate<B: Backend>(
    b: &B,
    visible: usize,
    hidden: usize,
    chains: usize,
    sweeps: usize,
) -> Result<f64, String> {
    let e = |e: ebm_engine::error::EngineError| e.to_string();
    let params = RbmTensors {
        units: VisibleUnits::Bernoulli,
        w: b.upload(
            visible,
            hidden,
            &random(1, 0, visible * hidden, -0.05, 0.05),
        )
        .map_err(e)?,
        b: b.upload(1, visible, &random(1, 1, visible, -0.5, 0.5))
            .map_err(e)?,
        c: b.upload(1, hidden, &random(1, 2, hidden, -0.5, 0.5))
            .map_err(e)?,
        sigma: None,
    };
    let v0: Vec<f32> = random(1, 3, chains * visible, 0.0, 1.0)
        .iter()
        .map(|&u| (u < 0.5) as u8 as f32)
        .collect();
    let mut v = b.upload(chains, visible, &v0).map_err(e)?;
    let mut vm = b.zeros(chains, visible).map_err(e)?;
    let mut h = b.zeros(chains, hidden).map_err(e)?;
    let mut hp = b.zeros(chains, hidden).map_err(e)?;
    let probe = b.zeros(1, 1).map_err(e)?;
    let mut sweep = |s: usize| -> Result<(), String> {
        b.sample_hidden(
            &params,
            &v,
            1.0,
            RngKey::new(9, 3, s as u64),
            &mut hp,
            Some(&mut h),
        )
        .map_err(e)?;
        b.sample_visible(
            &params,
            &h,
            1.0,
            RngKey::new(9, 4, s as u64),
            &mut vm,
            &mut v,
        )
        .map_err(e)?;
        Ok(())
    };
    sweep(0)?;
    b.all_finite(&probe).map_err(e)?;
    let start = Instant::now();
    for s in 1..=sweeps {
        sweep(s)?;
    }
    b.all_finite(&v).map_err(e)?; // waits for the queue
    Ok(sweeps as f64 / start.elapsed().as_secs_f64())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("error: {msg}");
            std::process::exit(2);
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    for name in &args.backends {
        let result = match name.as_str() {
            "cpu" => run_cpu(&args, &mut rows),
            #[cfg(feature = "wgpu")]
            "wgpu" => run_cube::<cubecl_runtime::Wgpu>(&args, &mut rows),
            #[cfg(feature = "cuda")]
            "cuda" => run_cube::<cubecl_runtime::Cuda>(&args, &mut rows),
            other => Err(format!(
                "backend {other} is not built in (cargo features wgpu/cuda)"
            )),
        };
        if let Err(msg) = result {
            eprintln!("{name}: {msg}");
            failed = true;
        }
    }
    let mut table = String::from(
        "| backend | benchmark | size | value | unit | note |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table += &format!(
            "| {} | {} | {} | {:.4} | {} | {} |\n",
            r.backend, r.what, r.size, r.value, r.unit, r.note
        );
    }
    println!("{table}");
    if let Some(path) = &args.out {
        if let Err(err) = std::fs::write(path, &table) {
            eprintln!("cannot write {path}: {err}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn run_cpu(args: &Args, rows: &mut Vec<Row>) -> Result<(), String> {
    let b = CpuBackend::new();
    for (chains, sweeps) in [
        (1000usize, if args.small { 3 } else { 10 }),
        (10_000, if args.small { 1 } else { 3 }),
    ] {
        let rate = gibbs_rate(&b, 784, 500, chains, sweeps)?;
        rows.push(Row {
            backend: "cpu".into(),
            what: "RBM Gibbs sweeps/s".into(),
            size: format!("784x500, {chains} chains"),
            value: rate,
            unit: "sweeps/s",
            note: format!(
                "{:.1} GFLOP/s",
                rate * 4.0 * (784 * 500 * chains) as f64 / 1e9
            ),
        });
    }
    Ok(())
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cubecl_runtime {
    #[cfg(feature = "cuda")]
    pub type Cuda = cubecl::cuda::CudaRuntime;
    #[cfg(feature = "wgpu")]
    pub type Wgpu = cubecl::wgpu::WgpuRuntime;
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn run_cube<R: CubeRuntime>(args: &Args, rows: &mut Vec<Row>) -> Result<(), String> {
    let b = CubeBackend::<R>::new().map_err(|e| e.to_string())?;
    let name = R::NAME.to_string();
    if args.check {
        let report = cube_bench::check_against_cpu(&b).map_err(|e| e.to_string())?;
        for line in &report.lines {
            println!("check {name}: {line}");
        }
        if !report.passed {
            return Err(
                "device results differ from the CPU reference (see the check lines)".into(),
            );
        }
    }
    let sizes: &[(usize, usize)] = if args.small {
        &[(1000, 2), (10_000, 1)]
    } else {
        &[(1000, 50), (10_000, 10)]
    };
    for &(chains, sweeps) in sizes {
        let rate = gibbs_rate(&b, 784, 500, chains, sweeps)?;
        rows.push(Row {
            backend: name.clone(),
            what: "RBM Gibbs sweeps/s".into(),
            size: format!("784x500, {chains} chains"),
            value: rate,
            unit: "sweeps/s",
            note: format!(
                "{:.1} GFLOP/s",
                rate * 4.0 * (784 * 500 * chains) as f64 / 1e9
            ),
        });
    }
    let (m, reps) = if args.small { (1000, 2) } else { (10_000, 20) };
    let flops = cube_bench::matmul_flops(&b, m, 500, 784, reps).map_err(|e| e.to_string())?;
    rows.push(Row {
        backend: name.clone(),
        what: "tiled matmul".into(),
        size: format!("{m}x500x784"),
        value: flops / 1e9,
        unit: "GFLOP/s",
        note: String::new(),
    });
    let lattice: &[(usize, usize, usize)] = if args.small {
        &[(256, 4, 5), (512, 1, 5)]
    } else {
        &[(1024, 16, 50), (4096, 1, 50)]
    };
    for &(size, chains, sweeps) in lattice {
        let rate = cube_bench::lattice_flips_per_ns(&b, size, chains, sweeps)
            .map_err(|e| e.to_string())?;
        rows.push(Row {
            backend: name.clone(),
            what: "lattice Ising heat-bath".into(),
            size: format!("L={size}, {chains} chains"),
            value: rate,
            unit: "flips/ns",
            note: String::new(),
        });
    }
    let ais: &[(usize, usize)] = if args.small {
        &[(1000, 3)]
    } else {
        &[(1000, 100), (10_000, 20)]
    };
    for &(chains, steps) in ais {
        let rate = cube_bench::ais_transitions_per_s(&b, 784, 500, chains, steps)
            .map_err(|e| e.to_string())?;
        rows.push(Row {
            backend: name.clone(),
            what: "RBM AIS chain-transitions/s".into(),
            size: format!("784x500, {chains} chains"),
            value: rate,
            unit: "transitions/s",
            note: String::new(),
        });
    }
    Ok(())
}
