use go_go_scope::prelude::*;

#[async_trait::async_trait]
trait Store {
    async fn load(&self) -> Result<u32, Error>;
}

struct Db;

#[async_trait::async_trait]
impl Store for Db {
    #[scoped(timeout = "1s")]
    async fn load(&self) -> Result<u32, Error> {
        Ok(1)
    }
}

fn main() {
    let _ = Db.load();
}
