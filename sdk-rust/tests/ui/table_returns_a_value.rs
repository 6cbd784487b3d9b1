use weir_udf::table;

#[table]
fn not_rows(n: i64) -> i64 {
    n
}

fn main() {}
