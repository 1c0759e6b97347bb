use go_go_scope::prelude::*;

#[scoped(attrs("order.items" = items.clone()))]
async fn place(items: Vec<u32>) -> Result<(), Error> {
    let _ = items;
    Ok(())
}

fn main() {
    let _ = place(vec![1]);
}
