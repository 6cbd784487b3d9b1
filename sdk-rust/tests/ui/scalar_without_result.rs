use weir_udf::scalar;

#[scalar]
fn log_it(x: i64) {
    let _ = x;
}

fn main() {}
