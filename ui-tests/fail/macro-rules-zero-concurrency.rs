use go_go_scope::prelude::*;

// A value passed through `macro_rules!` is checked as if written in place.
macro_rules! limited {
    ($limit:expr) => {
        #[scoped(concurrency = $limit)]
        async fn crawl() -> Result<(), Error> {
            Ok(())
        }
    };
}

limited!(0);

fn main() {
    let _ = crawl();
}
