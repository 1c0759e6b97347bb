use go_go_scope::prelude::*;

async fn upload(bytes: Vec<u8>) -> Result<usize, std::io::Error> {
    Ok(bytes.len())
}

// Each attempt builds a new `async move` block, and the first one takes `bytes` for good.
#[scoped]
async fn save(bytes: Vec<u8>) -> Result<usize, Error> {
    go!(retry = 3, async move { upload(bytes).await }).result().await
}

fn main() {
    let _ = save(vec![1]);
}
