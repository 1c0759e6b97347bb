//! Local scopes: a scope of `Send` tasks is a `Send` future (it can be `tokio::spawn`ed, as an
//! axum handler's future must be); a scope of tasks that are not `Send` runs where `Send` is not
//! needed (a `current_thread` runtime, a `LocalSet`).
use std::cell::RefCell;
use std::rc::Rc;

use go_go_scope::{Error, Scope};

struct Client {
    base: String,
}

impl Client {
    async fn get(&self, id: u32) -> Result<String, Error> {
        tokio::task::yield_now().await;
        Ok(format!("{}/{id}", self.base))
    }
}

async fn handler(client: &Client, ids: &[u32]) -> Result<Vec<String>, Error> {
    Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let tasks: Vec<_> = ids.iter().map(|&id| s.try_spawn(client.get(id))).collect();
            let mut pages = Vec::new();
            for task in tasks {
                pages.push(task.result().await?);
            }
            Ok(pages)
        })
    })
    .await?
}

async fn tally(counts: &RefCell<Vec<u32>>, shared: Rc<u32>) -> Result<(), Error> {
    Scope::local_unsend(Scope::builder(), |s| {
        Box::pin(async {
            let a = s.spawn(async { counts.borrow_mut().push(*shared) });
            let b = s.spawn(async { counts.borrow_mut().push(*shared + 1) });
            a.result().await?;
            b.result().await
        })
    })
    .await?
}

fn main() {
    let multi = tokio::runtime::Runtime::new().unwrap();
    let pages = multi
        .block_on(multi.spawn(async {
            let client = Client {
                base: "https://example.com".into(),
            };
            handler(&client, &[1, 2]).await
        }))
        .unwrap()
        .unwrap();
    assert_eq!(pages, ["https://example.com/1", "https://example.com/2"]);

    let single = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let counts = RefCell::new(Vec::new());
    local
        .block_on(&single, async {
            tokio::task::spawn_local(async {}).await.unwrap();
            tally(&counts, Rc::new(4)).await
        })
        .unwrap();
    assert_eq!(counts.into_inner(), [4, 5]);
}
