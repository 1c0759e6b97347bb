use go_go_scope::prelude::*;

#[scoped("30s")]
async fn slow() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = slow();
}
