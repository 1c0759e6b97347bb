use go_go_scope::prelude::*;

async fn upload(bytes: Vec<u8>) -> Result<usize, std::io::Error> {
    Ok(bytes.len())
}

#[scoped]
async fn send(bytes: Vec<u8>) -> Result<usize, Error> {
    go!(retry = 3, upload(bytes)).result().await
}

fn main() {
    let _ = send(vec![1, 2, 3]);
}
