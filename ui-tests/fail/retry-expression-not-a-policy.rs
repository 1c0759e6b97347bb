use go_go_scope::prelude::*;

const ATTEMPTS: &str = "3";

#[scoped(retry = ATTEMPTS)]
async fn sync() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = sync();
}
