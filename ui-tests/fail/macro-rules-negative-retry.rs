use go_go_scope::prelude::*;

macro_rules! retried {
    ($times:expr) => {
        #[scoped(retry = $times)]
        async fn sync_catalog() -> Result<(), Error> {
            Ok(())
        }
    };
}

retried!(-1);

fn main() {
    let _ = sync_catalog();
}
