//! A fork-join team for the CPU backend's short parallel steps.
//!
//! One PCD update of a small RBM is a dozen steps of 10-500 microseconds each. Handing each
//! to rayon's pool costs more than it saves on small machines: an idle worker sleeps, and
//! waking it (a futex, and in a VM an interrupt to a halted virtual CPU) takes tens of
//! microseconds every time (measured on the 2-core VM: 784 x 20 RBM, batch 100, 0.27 s per
//! epoch with the pool vs 0.18 s on one thread). The team's helpers instead spin on a flag
//! between steps, so a step reaches them in well under a microsecond, and park after
//! [`SPIN`] without work, so an idle process costs nothing.
//!
//! One caller at a time: a step that finds the team busy (another job, or a step started
//! from inside a step) runs all its parts on the calling thread.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins for the next step before parking.
const SPIN: Duration = Duration::from_millis(2);

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const DONE: u32 = 2;

/// A helper's share of a step: `(*body)(0)` takes parts until none are left, with `body`
/// borrowed from the caller's stack.
#[derive(Clone, Copy)]
struct Task {
    body: *const (dyn Fn(usize) + Sync),
}

struct Slot {
    state: AtomicU32,
    sleeping: AtomicBool,
    task: UnsafeCell<Option<Task>>,
    panic: UnsafeCell<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: `task` and `panic` are only touched by the caller while the slot is IDLE/DONE and
// by the helper while it is POSTED; the SeqCst state transitions order those accesses.
unsafe impl Sync for Slot {}
unsafe impl Send for Slot {}

struct Team {
    slots: Vec<(Arc<Slot>, Thread)>,
    busy: Mutex<()>,
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        // as many threads as rayon's pool, which RAYON_NUM_THREADS and the machine set
        let helpers = rayon::current_num_threads().saturating_sub(1);
        let slots = (0..helpers)
            .filter_map(|k| {
                let slot = Arc::new(Slot {
                    state: AtomicU32::new(IDLE),
                    sleeping: AtomicBool::new(false),
                    task: UnsafeCell::new(None),
                    panic: UnsafeCell::new(None),
                });
                let mine = slot.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("ebm-cpu-team-{k}"))
                    .spawn(move || helper(&mine))
                    .ok()?;
                Some((slot, handle.thread().clone()))
            })
            .collect();
        Team {
            slots,
            busy: Mutex::new(()),
        }
    })
}

fn helper(slot: &Slot) {
    let mut last_work = Instant::now();
    let mut spins = 0u32;
    loop {
        if slot.state.load(SeqCst) == POSTED {
            // SAFETY: the caller wrote the task before posting and waits for DONE, so the
            // body it points to is alive and nobody else touches the cells meanwhile.
            unsafe {
                let task = (*slot.task.get()).expect("a posted slot has a task");
                let result = catch_unwind(AssertUnwindSafe(|| (*task.body)(0)));
                *slot.panic.get() = result.err();
            }
            slot.state.store(DONE, SeqCst);
            last_work = Instant::now();
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && last_work.elapsed() > SPIN {
            slot.sleeping.store(true, SeqCst);
            if slot.state.load(SeqCst) != POSTED {
                std::thread::park();
            }
            slot.sleeping.store(false, SeqCst);
            last_work = Instant::now();
        }
    }
}

/// Runs `body(0) .. body(parts - 1)`, spread over the team when it is free (the caller and
/// up to `parts - 1` helpers each take the next part left until none are), and returns
/// when all have finished. A panic in a part is re-raised here after the others finish.
pub fn split(parts: usize, body: &(dyn Fn(usize) + Sync)) {
    let team = team();
    let guard = if parts > 1 && !team.slots.is_empty() {
        match team.busy.try_lock() {
            Ok(guard) => Some(guard),
            // a part panicked while holding it: the slots were settled before the unwind
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    } else {
        None
    };
    let Some(_guard) = guard else {
        (0..parts).for_each(body);
        return;
    };
    // Every member takes the next part left until none are: with more parts than members,
    // one that finishes early takes more instead of waiting for a slow one.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let take_parts = |_: usize| loop {
        let p = next.fetch_add(1, SeqCst);
        if p >= parts {
            break;
        }
        body(p);
    };
    let take_parts: &(dyn Fn(usize) + Sync) = &take_parts;
    // SAFETY (lifetime): `split` does not return before every posted helper is DONE, so
    // the wrapper (and the body it borrows) outlives every use the helpers make of it.
    let body_ptr: *const (dyn Fn(usize) + Sync) = unsafe {
        std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(take_parts)
    };
    let posted = team.slots.len().min(parts - 1);
    for (slot, thread) in team.slots.iter().take(posted) {
        // SAFETY: the slot is IDLE (we hold the team), so its helper does not read it.
        unsafe { *slot.task.get() = Some(Task { body: body_ptr }) };
        slot.state.store(POSTED, SeqCst);
        if slot.sleeping.load(SeqCst) {
            thread.unpark();
        }
    }
    let mine = catch_unwind(AssertUnwindSafe(|| take_parts(0)));
    let mut helper_panic = None;
    for (slot, _) in team.slots.iter().take(posted) {
        while slot.state.load(SeqCst) != DONE {
            std::hint::spin_loop();
        }
        // SAFETY: DONE: the helper no longer touches the cells.
        unsafe {
            *slot.task.get() = None;
            helper_panic = helper_panic.or((*slot.panic.get()).take());
        }
        slot.state.store(IDLE, SeqCst);
    }
    if let Err(p) = mine {
        resume_unwind(p);
    }
    if let Some(p) = helper_panic {
        resume_unwind(p);
    }
}

/// Threads a step may use (the helpers plus the caller).
pub fn size() -> usize {
    team().slots.len() + 1
}

/// Splits `data` (rows of `cols` values) into one block of whole rows per team member:
/// (first row, rows), each behind a mutex that only its part takes.
pub fn row_blocks<T>(data: &mut [T], cols: usize) -> Vec<Mutex<(usize, &mut [T])>> {
    let cols = cols.max(1);
    let rows = data.len() / cols;
    let parts = size().min(rows.max(1));
    let mut blocks = Vec::with_capacity(parts);
    let mut rest = data;
    for p in 0..parts {
        let (r0, r1) = part_range(rows, parts, p, 1);
        let (head, tail) = rest.split_at_mut((r1 - r0) * cols);
        blocks.push(Mutex::new((r0, head)));
        rest = tail;
    }
    blocks
}

/// `[start, end)` of part `k` of `n` items split into `parts` near-equal parts, each a
/// multiple of `align` items (except the last).
pub fn part_range(n: usize, parts: usize, k: usize, align: usize) -> (usize, usize) {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let per = units / parts;
    let extra = units % parts;
    let start = (k * per + k.min(extra)) * align;
    let end = ((k + 1) * per + (k + 1).min(extra)) * align;
    (start.min(n), end.min(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once_even_when_nested_or_concurrent() {
        let counts: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        split(7, &|k| {
                            counts[k].fetch_add(1, SeqCst);
                            // a step inside a step runs on the calling thread
                            split(2, &|_| {});
                        });
                    }
                });
            }
        });
        assert!(counts.iter().all(|c| c.load(SeqCst) == 600));
    }

    #[test]
    fn a_panicking_part_is_reraised_and_the_team_stays_usable() {
        let r = std::panic::catch_unwind(|| {
            split(2, &|k| {
                if k == 1 {
                    panic!("part one fails");
                }
            })
        });
        assert!(r.is_err());
        let hits = AtomicUsize::new(0);
        split(4, &|_| {
            hits.fetch_add(1, SeqCst);
        });
        assert_eq!(hits.load(SeqCst), 4);
        // and still spreads work (the lock a panic poisoned is taken over): some part runs
        // on another thread. Each part waits (up to 100 ms) for the other to start, so the
        // caller cannot take both before a helper wakes; a try where a concurrent test
        // holds the team runs both parts here, one after the other, and another try follows
        // (empty parts on a loaded 2-core machine let the caller take both every time)
        if size() > 1 {
            let caller = std::thread::current().id();
            let elsewhere = AtomicUsize::new(0);
            for _ in 0..50 {
                let started = AtomicUsize::new(0);
                split(2, &|_| {
                    started.fetch_add(1, SeqCst);
                    let wait = std::time::Instant::now();
                    while started.load(SeqCst) < 2 && wait.elapsed().as_millis() < 100 {
                        std::hint::spin_loop();
                    }
                    if std::thread::current().id() != caller {
                        elsewhere.fetch_add(1, SeqCst);
                    }
                });
                if elsewhere.load(SeqCst) > 0 {
                    break;
                }
            }
            assert!(
                elsewhere.load(SeqCst) > 0,
                "the team no longer runs parts elsewhere"
            );
        }
    }

    #[test]
    fn part_ranges_cover_without_overlap() {
        for (n, parts, align) in [(10, 2, 1), (784, 2, 16), (5, 3, 4), (0, 2, 8), (100, 7, 3)] {
            let mut next = 0;
            for k in 0..parts {
                let (a, b) = part_range(n, parts, k, align);
                assert_eq!(a, next.min(n));
                assert!(b >= a && (b == n || (b - a) % align == 0));
                next = b;
            }
            assert_eq!(next, n);
        }
    }
}
