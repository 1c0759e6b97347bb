use go_go_scope::try_go;

async fn fetch() -> Result<u32, std::io::Error> {
    Ok(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (_err, _value): (Option<String>, Option<u32>) = try_go!(fetch());
}
