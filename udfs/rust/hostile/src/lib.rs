//! Misbehaving functions, for tests only: each must be stopped by the host with a clear error,
//! after which the host keeps serving correct calls.

use weir_udf::scalar;

/// Never returns: the host's per-call deadline must interrupt it.
#[scalar]
fn spin(x: i64) -> i64 {
    let mut n = x;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates without bound: the host's memory cap must stop it.
#[scalar]
fn hog(megabytes_per_step: i64) -> i64 {
    let step = (megabytes_per_step.max(1) as usize) << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; step]);
        std::hint::black_box(&hoard);
    }
}

/// Panics on every row.
#[scalar]
fn explode(x: i64) -> i64 {
    panic!("explode was asked to explode on {x}")
}

/// Tries to read a file from the host; the sandbox grants no filesystem.
#[scalar]
fn read_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Tries to read the host's environment; the sandbox grants none.
#[scalar]
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the wall clock, in microseconds since the epoch; the sandbox shows zero without a grant.
#[scalar]
fn clock(_x: i64) -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(-1, |d| d.as_micros() as i64)
}

/// Writes to stdout and stderr, which the host captures into its log, then returns its input.
#[scalar]
fn chatty(x: i64) -> i64 {
    println!("saw {x}");
    eprintln!("warning about {x}");
    x
}

/// A well-behaved function, to show the host still serves after a misbehaving call.
#[scalar]
fn double(x: i64) -> i64 {
    x * 2
}

/// Panics on the row where `x == at` while the file `armed` exists (the sandbox must grant
/// reading its directory), else returns `x`: a failure a test can switch off from outside.
#[scalar]
fn explode_while_armed(x: i64, at: i64, armed: &str) -> i64 {
    if x == at && std::path::Path::new(armed).exists() {
        panic!("explode_while_armed met {x} while {armed} exists")
    }
    x
}

weir_udf::export!(
    spin,
    hog,
    explode,
    read_file,
    env_var,
    clock,
    chatty,
    double,
    explode_while_armed
);
