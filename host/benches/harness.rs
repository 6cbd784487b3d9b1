//! Timing shared by the benchmarks: best-of-rounds means, a name filter, one printed line a case.

use std::time::{Duration, Instant};

pub const ROUNDS: u32 = 7;
const ROUND: Duration = Duration::from_millis(120);

/// Time of one run of `f`: the best of `ROUNDS` round means, each over about `ROUND`. The best
/// round, not the mean, because this machine is shared and other tenants only ever add time.
pub fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    (0..ROUNDS)
        .map(|_| {
            let mut runs = 0u32;
            let started = Instant::now();
            while started.elapsed() < ROUND || runs < 3 {
                f();
                runs += 1;
            }
            started.elapsed() / runs
        })
        .min()
        .unwrap_or_default()
}

/// `WEIR_BENCH_FILTER=add_one` runs only the cases whose name contains it (for profiling).
pub fn selected(name: &str) -> bool {
    std::env::var("WEIR_BENCH_FILTER").map_or(true, |f| name.contains(&f))
}

/// The header of the table `case` prints.
pub fn header() {
    println!(
        "{:<34} {:>6} {:>12} {:>12}",
        "case", "rows", "ns/row", "us/call"
    );
}

/// Times `f` over `rows` rows and prints a line, if the case is selected; returns the time of
/// one call.
pub fn case(name: &str, rows: usize, f: impl FnMut()) -> Option<Duration> {
    if !selected(name) {
        return None;
    }
    let per_call = time(f);
    let ns_per_row = per_call.as_nanos() as f64 / rows as f64;
    println!(
        "{name:<34} {rows:>6} {ns_per_row:>12.2} {:>12.2}",
        per_call.as_nanos() as f64 / 1000.0
    );
    Some(per_call)
}
