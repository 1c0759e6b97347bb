use go_go_scope::prelude::*;

#[scoped]
async fn total(items: Vec<u32>) -> Result<u32, Error> {
    let items = &items;
    go!(async { items.iter().sum::<u32>() }).result().await
}

fn main() {
    let _ = total(vec![1, 2]);
}
