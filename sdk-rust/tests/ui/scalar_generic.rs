use weir_udf::scalar;

#[scalar]
fn identity<T>(x: T) -> T {
    x
}

fn main() {}
