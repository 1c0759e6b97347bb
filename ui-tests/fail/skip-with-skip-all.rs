use go_go_scope::prelude::*;

#[scoped(skip(password), skip_all)]
async fn login(user: String, password: String) -> Result<usize, Error> {
    Ok(user.len() + password.len())
}

fn main() {
    let _ = login(String::new(), String::new());
}
