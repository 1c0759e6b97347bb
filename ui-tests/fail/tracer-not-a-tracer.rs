use go_go_scope::prelude::*;

#[scoped(tracer = 5)]
async fn traced() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = traced();
}
