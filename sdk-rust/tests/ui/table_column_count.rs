use weir_udf::table;

#[table(columns = ["only_one"])]
fn pairs(n: i64) -> Vec<(i64, i64)> {
    (0..n).map(|i| (i, i * i)).collect()
}

fn main() {}
