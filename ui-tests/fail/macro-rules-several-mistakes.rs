use go_go_scope::prelude::*;

// Both values come through the macro's fragments; both mistakes are reported at the caller.
macro_rules! crawler {
    ($deadline:literal, $limit:expr) => {
        #[scoped(timeout = $deadline, concurrency = $limit)]
        async fn crawl() -> Result<(), Error> {
            Ok(())
        }
    };
}

crawler!("1e3ms", 0);

fn main() {
    let _ = crawl();
}
