use std::collections::HashMap;
use weir_udf::scalar;

#[scalar]
fn size(map: HashMap<String, i64>) -> i64 {
    map.len() as i64
}

fn main() {}
