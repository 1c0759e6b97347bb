//! `try_go!` and `try_go_raw!` in sync and async code, outside any scope.
use go_go_scope::prelude::*;

async fn fetch(n: u32) -> Result<u32, std::num::ParseIntError> {
    "7".parse::<u32>().map(|v| v + n)
}

fn sync_code() -> Option<u32> {
    let (err, value) = try_go!("12".parse::<u32>());
    assert!(err.is_none());
    let (raw_err, _) = try_go_raw!("x".parse::<u32>());
    let _: Option<std::num::ParseIntError> = raw_err;
    value
}

#[tokio::main]
async fn main() {
    assert_eq!(sync_code(), Some(12));
    let (err, value): (Option<String>, Option<u32>) = try_go!(fetch(1).await);
    assert_eq!((err, value), (None, Some(8)));
    let (err, value) = try_go_raw!(fetch(2).await);
    let _: Option<std::num::ParseIntError> = err;
    assert_eq!(value, Some(9));
}
