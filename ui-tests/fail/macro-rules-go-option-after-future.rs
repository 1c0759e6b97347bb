use go_go_scope::prelude::*;

async fn fetch(id: u32) -> u32 {
    id
}

// Two problems in one `go!` written by a macro: both reported, nothing else.
macro_rules! spawn_named {
    ($name:literal, $deadline:literal, $future:expr) => {
        go!(timeout = $deadline, $future, name = $name)
    };
}

#[scoped]
async fn load() -> Result<u32, Error> {
    spawn_named!("fetch", "0s", fetch(1)).result().await
}

fn main() {
    let _ = load();
}
