use go_go_scope::prelude::*;
use std::future::Future;

#[scoped]
fn fetch() -> impl Future<Output = u32> {
    async { 1 }
}

fn main() {
    let _ = fetch();
}
