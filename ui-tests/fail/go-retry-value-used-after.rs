use go_go_scope::prelude::*;

async fn upload(bytes: Vec<u8>) -> Result<usize, std::io::Error> {
    Ok(bytes.len())
}

// With `retry`, the expression's variables move into a closure: `bytes` is gone after `go!`.
#[scoped]
async fn save(bytes: Vec<u8>) -> Result<usize, Error> {
    let task = go!(retry = 3, upload(bytes.clone()));
    let _size = bytes.len();
    task.result().await
}

fn main() {
    let _ = save(vec![1]);
}
