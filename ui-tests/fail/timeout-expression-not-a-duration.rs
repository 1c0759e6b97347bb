use go_go_scope::prelude::*;

const DEADLINE_SECS: u64 = 30;

#[scoped(timeout = DEADLINE_SECS)]
async fn sync_catalog() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = sync_catalog();
}
