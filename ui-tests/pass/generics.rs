//! Generic fns, where clauses, lifetimes, and `impl Trait` arguments.
use std::fmt::Display;

use go_go_scope::prelude::*;

#[scoped(concurrency = 2)]
async fn render_all<T>(items: Vec<T>) -> Result<Vec<String>, Error>
where
    T: Display + Send + 'static,
{
    let tasks: Vec<Task<String>> = items
        .into_iter()
        .map(|item| go!(async move { item.to_string() }))
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.result().await?);
    }
    Ok(out)
}

#[scoped]
async fn first_word<'a>(text: &'a str) -> &'a str {
    text.split(' ').next().unwrap_or(text)
}

#[scoped(skip(label))]
async fn labelled(label: impl Display, value: impl Into<u64>) -> Result<String, Error> {
    Ok(format!("{label}={}", value.into()))
}

#[tokio::main]
async fn main() {
    assert_eq!(render_all(vec![1, 2]).await.unwrap(), ["1", "2"]);
    assert_eq!(first_word("hello world").await, "hello");
    assert_eq!(labelled("n", 3_u8).await.unwrap(), "n=3");
}
