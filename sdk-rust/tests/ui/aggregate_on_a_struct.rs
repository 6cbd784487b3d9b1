use weir_udf::aggregate;

#[aggregate]
struct Total(i64);

fn main() {}
