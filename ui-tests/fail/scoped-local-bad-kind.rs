use go_go_scope::prelude::*;

#[scoped(local(sendable))]
async fn fetch_all(ids: &[u32]) -> u32 {
    ids.len() as u32
}

fn main() {
    let _ = fetch_all(&[1]);
}
