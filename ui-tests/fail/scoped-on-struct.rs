use go_go_scope::prelude::*;

#[scoped]
struct Handler {
    id: u64,
}

fn main() {
    let _ = Handler { id: 1 }.id;
}
