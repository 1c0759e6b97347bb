//! Values passed through `macro_rules!` fragments are read as if written in place.
use go_go_scope::prelude::*;

macro_rules! scoped_fetch {
    ($fn_name:ident, $deadline:literal, $limit:expr, $name:expr, $retries:expr) => {
        #[scoped(timeout = $deadline, concurrency = $limit, name = $name, retry = $retries)]
        async fn $fn_name() -> Result<u32, Error> {
            let task = go!(name = $name, timeout = $deadline, async { 1_u32 });
            task.result().await
        }
    };
}

scoped_fetch!(fetch, "1s", 2, "fetch", 3);

async fn double(x: u32) -> u32 {
    x * 2
}

#[scoped]
async fn variables() -> Result<u32, Error> {
    // A future held in a variable, with and without a trailing comma.
    let future = double(2);
    let first = go!(future,);
    let second = go!(double(3));
    Ok(first.result().await? + second.result().await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(fetch().await.unwrap(), 1);
    assert_eq!(variables().await.unwrap(), 10);
}
