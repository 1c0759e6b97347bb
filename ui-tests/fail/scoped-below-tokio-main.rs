use go_go_scope::prelude::*;

#[tokio::main]
#[scoped]
async fn main() {}
