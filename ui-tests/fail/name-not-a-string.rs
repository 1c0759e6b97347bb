use go_go_scope::prelude::*;

#[scoped(name = 5)]
async fn checkout() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = checkout();
}
