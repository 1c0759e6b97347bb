use go_go_scope::prelude::*;

#[scoped(attrs(user_id = id))]
async fn load(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {
    let _ = load(1);
}
