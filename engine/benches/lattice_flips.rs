//! Lattice Ising throughput: spin-flip attempts per nanosecond of checkerboard sweeps on a
//! 256 x 256 torus (and any L given as the first argument), with 1 and 8 chains, both updates.
//! Run: `cargo bench -p ebm-engine --bench lattice_flips [-- L]`. Results: docs/benchmarks.md.

use ebm_engine::lattice::checkerboard::{LatticeChains, LatticeUpdate};
use ebm_engine::lattice::LatticeIsing;
use ebm_engine::rng::RngStream;
use std::time::Instant;

fn main() {
    let size: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let threads = rayon::current_num_threads();
    println!("lattice Ising {size} x {size}, {threads} threads, K = 0.4406868 (critical), h = 0");
    println!(
        "{:>7} {:>11} {:>8} {:>9} {:>9} {:>10} {:>14}",
        "chains", "update", "sweeps", "wall s", "cpu s", "flips/ns", "flips/cpu-ns"
    );
    let model = LatticeIsing::new(size, 0.440_686_8, 0.0).unwrap();
    for chains in [1usize, 8] {
        for update in [LatticeUpdate::Metropolis, LatticeUpdate::HeatBath] {
            let mut rng = RngStream::new(1, 0);
            let mut state = LatticeChains::random(size, chains, rng.next_key()).unwrap();
            let betas = vec![1.0f32; chains];
            state.sweep(&model, &betas, update, &mut rng, 5);
            // Aim for about a second of work.
            let sweeps = ((1.0e9 / (size * size * chains) as f64) as usize).max(10);
            let (start, cpu_start) = (Instant::now(), cpu_seconds());
            state.sweep(&model, &betas, update, &mut rng, sweeps);
            let seconds = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_start;
            let flips = (sweeps * size * size * chains) as f64;
            println!(
                "{chains:>7} {:>11} {sweeps:>8} {seconds:>9.3} {cpu:>9.3} {:>10.3} {:>14.3}",
                format!("{update:?}"),
                flips / seconds / 1e9,
                flips / cpu / 1e9
            );
        }
    }
}

/// User + system CPU seconds of this process (from /proc; 0 where unavailable). On a
/// shared machine, flips per CPU-nanosecond times the core count is what idle cores give.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}
