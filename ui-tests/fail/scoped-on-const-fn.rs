use go_go_scope::prelude::*;

#[scoped]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer();
}
