use go_go_scope::prelude::*;

// The fn returns `()`: the error is at `5`, not at the attribute.
#[scoped]
async fn handler() {
    5
}

fn main() {
    let _ = handler();
}
