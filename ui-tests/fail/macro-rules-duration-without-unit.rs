use go_go_scope::prelude::*;

macro_rules! with_deadline {
    ($deadline:literal) => {
        #[scoped(timeout = $deadline)]
        async fn fetch() -> Result<(), Error> {
            Ok(())
        }
    };
}

with_deadline!("30");

fn main() {
    let _ = fetch();
}
