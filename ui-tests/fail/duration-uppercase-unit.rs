use go_go_scope::prelude::*;

#[scoped(timeout = "30S")]
async fn slow() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = slow();
}
