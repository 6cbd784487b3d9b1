//! The macros' errors for common mistakes read well (snapshots in tests/ui; re-bless with
//! `TRYBUILD=overwrite`).

#[test]
fn macro_errors_are_readable() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
