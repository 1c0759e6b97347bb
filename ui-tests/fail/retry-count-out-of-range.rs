use go_go_scope::prelude::*;

#[scoped(retry = 99999999999)]
async fn sync() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = sync();
}
