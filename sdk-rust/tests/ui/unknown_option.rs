use weir_udf::scalar;

#[scalar(nmae = "twice")]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {}
