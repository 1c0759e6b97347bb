//! A request handler written three times: with a spawned scope, where every task must own what
//! it uses (so the shared state travels in `Arc`s and the request's data is cloned into each
//! task); with a local scope, where the tasks borrow the state and the request directly; and
//! with `#[scoped(local)]`, the same local scope written with `go!`.
//!
//! Both load a product page: the product, its stock in three warehouses and its reviews, at
//! once, under a per-request deadline. The local version's future is `Send`, so it runs as a
//! spawned Tokio task here, as an axum handler's future would.
//!
//! Run: `cargo run -p go-go-scope-examples --example local_handler`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use go_go_scope::prelude::*;
use go_go_scope::{Error, Scope};
use tokio::time::{Instant, sleep};

/// What the handler reads: a pretend database.
struct Catalog {
    products: HashMap<u64, String>,
    stock: HashMap<(u64, &'static str), u32>,
    reviews: HashMap<u64, Vec<u8>>,
}

impl Catalog {
    fn new() -> Catalog {
        Catalog {
            products: HashMap::from([(7, "teapot".to_string())]),
            stock: HashMap::from([((7, "berlin"), 3), ((7, "lyon"), 0), ((7, "turin"), 12)]),
            reviews: HashMap::from([(7, vec![5, 4, 5])]),
        }
    }

    async fn product(&self, id: u64) -> Result<String, String> {
        sleep(Duration::from_millis(30)).await;
        self.products
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("no product {id}"))
    }

    async fn stock(&self, id: u64, warehouse: &str) -> u32 {
        sleep(Duration::from_millis(20)).await;
        self.stock
            .iter()
            .find(|((p, w), _)| *p == id && *w == warehouse)
            .map_or(0, |(_, n)| *n)
    }

    async fn rating(&self, id: u64) -> f32 {
        sleep(Duration::from_millis(25)).await;
        let stars = self.reviews.get(&id).map_or(&[][..], Vec::as_slice);
        stars.iter().map(|&s| f32::from(s)).sum::<f32>() / stars.len().max(1) as f32
    }
}

/// The request, as a web framework would hand it over.
struct Request {
    product: u64,
    warehouses: Vec<&'static str>,
}

#[derive(Debug)]
struct ProductPage {
    name: String,
    in_stock: u32,
    rating: f32,
}

fn deadline() -> go_go_scope::ScopeBuilder {
    Scope::builder()
        .name("product-page")
        .timeout(Duration::from_millis(500))
}

/// Before: spawned tasks are `'static`, so each one gets its own `Arc` of the catalog and its
/// own copy of what it needs from the request.
async fn page_spawned(catalog: Arc<Catalog>, request: Arc<Request>) -> Result<ProductPage, Error> {
    Scope::run(deadline(), |s| async move {
        let id = request.product;
        let product = s.try_spawn({
            let catalog = Arc::clone(&catalog);
            async move { catalog.product(id).await }
        });
        let stock: Vec<_> = request
            .warehouses
            .iter()
            .map(|&warehouse| {
                let catalog = Arc::clone(&catalog);
                s.spawn(async move { catalog.stock(id, warehouse).await })
            })
            .collect();
        let rating = s.spawn({
            let catalog = Arc::clone(&catalog);
            async move { catalog.rating(id).await }
        });
        let mut in_stock = 0;
        for task in stock {
            in_stock += task.result().await?;
        }
        Ok(ProductPage {
            name: product.result().await?,
            in_stock,
            rating: rating.result().await?,
        })
    })
    .await?
}

/// After: local tasks borrow the catalog and the request; no `Arc`, no clones.
async fn page_local(catalog: &Catalog, request: &Request) -> Result<ProductPage, Error> {
    Scope::local(deadline(), |s| {
        Box::pin(async {
            let id = request.product;
            let product = s.try_spawn(catalog.product(id));
            let stock: Vec<_> = request
                .warehouses
                .iter()
                .map(|warehouse| s.spawn(catalog.stock(id, warehouse)))
                .collect();
            let rating = s.spawn(catalog.rating(id));
            let mut in_stock = 0;
            for task in stock {
                in_stock += task.result().await?;
            }
            Ok(ProductPage {
                name: product.result().await?,
                in_stock,
                rating: rating.result().await?,
            })
        })
    })
    .await?
}

/// The same with the macros: `go!` in a `#[scoped(local)]` fn spawns into its local scope, and
/// its futures borrow the fn's arguments. The rating gets a deadline of its own: a slow review
/// service should not cost the whole page.
#[scoped(local, name = "product-page", timeout = "500ms")]
async fn page_macro(catalog: &Catalog, request: &Request) -> Result<ProductPage, Error> {
    let id = request.product;
    let product = go!(catalog.product(id));
    let stock: Vec<_> = request
        .warehouses
        .iter()
        .map(|warehouse| go!(catalog.stock(id, warehouse)))
        .collect();
    let rating = go!(name = "rating", timeout = "100ms", catalog.rating(id));
    let mut in_stock = 0;
    for task in stock {
        in_stock += task.result().await?;
    }
    Ok(ProductPage {
        name: product.result().await?,
        in_stock,
        rating: rating.result().await.unwrap_or(0.0),
    })
}

#[tokio::main]
async fn main() {
    let catalog = Arc::new(Catalog::new());
    let request = Request {
        product: 7,
        warehouses: vec!["berlin", "lyon", "turin"],
    };

    let began = Instant::now();
    let spawned = page_spawned(Arc::clone(&catalog), Arc::new(request))
        .await
        .expect("the spawned handler");
    println!(
        "spawned scope: {spawned:?} in {} ms",
        began.elapsed().as_millis()
    );

    // The server's side: every request is a Tokio task, so the handler's future must be `Send`.
    let server_side = Arc::clone(&catalog);
    let local = tokio::spawn(async move {
        let request = Request {
            product: 7,
            warehouses: vec!["berlin", "lyon", "turin"],
        };
        let began = Instant::now();
        let page = page_local(&server_side, &request).await;
        (page, began.elapsed())
    });
    let (page, took) = local.await.expect("the request task");
    let page = page.expect("the local handler");
    println!("local scope:   {page:?} in {} ms", took.as_millis());
    assert_eq!((page.name.as_str(), page.in_stock), ("teapot", 15));
    assert!((page.rating - spawned.rating).abs() < f32::EPSILON);

    let request = Request {
        product: 7,
        warehouses: vec!["berlin", "lyon", "turin"],
    };
    let with_macros = tokio::spawn(async move {
        let page = page_macro(&catalog, &request).await;
        (page, catalog)
    });
    let (page, catalog) = with_macros.await.expect("the request task");
    let page = page.expect("the #[scoped(local)] handler");
    println!("#[scoped(local)]: {page:?}");
    assert_eq!((page.name.as_str(), page.in_stock), ("teapot", 15));

    // A product that does not exist: the first error ends the request and cancels the rest.
    let missing = Request {
        product: 8,
        warehouses: vec!["berlin"],
    };
    let err = page_local(&catalog, &missing).await.unwrap_err();
    println!("missing product: {err}");
}
