use go_go_scope::prelude::*;

#[scoped(timeout = 500ms)]
async fn quick() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = quick();
}
