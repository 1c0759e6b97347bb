use go_go_scope::prelude::*;

#[scoped(parent = 5)]
async fn child() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = child();
}
