use go_go_scope::try_go_raw;

#[derive(Debug)]
enum DbError {
    Busy,
}

async fn lookup() -> Result<u32, DbError> {
    Err(DbError::Busy)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (err, _value) = try_go_raw!(lookup());
    if let Some(DbError::Busy) = err {}
}
