//! URL helpers: scalar `url_domain(url varchar) -> varchar` and table function
//! `url_segments(url varchar) -> (position int, segment varchar)`.

use weir_udf::{scalar, table};

/// The part of `url` after the scheme and before the path, port and credentials stripped; null
/// when `url` has no `scheme://`.
#[scalar]
fn url_domain(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    if host.is_empty() { None } else { Some(host) }
}

/// One row per non-empty segment of the URL's path, numbered from 1.
#[table(columns = ["position", "segment"])]
fn url_segments(url: &str) -> impl Iterator<Item = (i32, &str)> {
    // Query and fragment first: a '/' inside them is not part of the path.
    let url = url.split(['?', '#']).next().unwrap_or("");
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    path.split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| (i as i32 + 1, s))
}

weir_udf::export!(url_domain, url_segments);
