//! Per-request scopes for [tower](https://docs.rs/tower) services: axum, tonic, hyper
//! (feature `tower`).
//!
//! [`ScopeLayer`] gives every request a [`Scope`] of its own. The inner service — an axum
//! router or a single handler — runs as that scope's body, so:
//!
//! - `go!` and `Scope::current()` in a handler reach the request's scope, and a `#[scoped]` fn
//!   called by the handler gets a child of it;
//! - the handler can also take the scope as `Extension<Scope>` (it is in the request's
//!   extensions);
//! - when the response is ready, the tasks the handler left running are cancelled and awaited
//!   and the scope's disposers run, before the response is handed back;
//! - when the client goes away, the server drops the request's future: the scope is cancelled at
//!   once and every task of the request ends with it;
//! - a deadline set on the scope answers `504 Gateway Timeout`, a cancellation from outside
//!   (for example [`ScopeBuilder::cancel_on`] with the application's shutdown token) `503
//!   Service Unavailable`;
//! - the scope's span is opened where the request future is first polled, so under a request
//!   span (tower-http's `TraceLayer`, for one) it is that span's child.
//!
//! Name scopes by route, not by URL: a scope name is a metrics label, and a name per URL grows
//! the metrics without bound. [`ScopeLayer::new`] names each scope by the request's method
//! alone (as OpenTelemetry names a server span whose route is unknown); with axum, apply the
//! layer with `Router::route_layer` and name the scope from axum's `MatchedPath` in
//! [`ScopeLayer::with`]:
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, extract::MatchedPath, routing::get};
//! use go_go_scope::{Scope, go, scoped, tower::ScopeLayer};
//!
//! #[scoped]
//! async fn order(id: u64) -> String {
//!     let total = go!(async move { id * 100 }); // a task of this request
//!     format!("order {id}: {}", total.await.1.unwrap_or(0))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|axum::extract::Path(id): axum::extract::Path<u64>| order(id)))
//!     .route_layer(ScopeLayer::with(|request| {
//!         let route = request.extensions.get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
//!         Scope::builder()
//!             .name(format!("{} {route}", request.method))
//!             .timeout(Duration::from_secs(10))
//!     }));
//! # drop(app);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Error, Scope, ScopeBuilder};

type MakeBuilder = dyn Fn(&Parts) -> ScopeBuilder + Send + Sync;

/// A tower [`Layer`] that runs every request in a [`Scope`] of its own; see the
/// [module docs](self).
///
/// Cloning is cheap: the builder function is shared.
#[derive(Clone)]
pub struct ScopeLayer {
    make: Arc<MakeBuilder>,
    /// Take each scope's span parent from the request's `traceparent` header.
    remote_parent: bool,
}

impl std::fmt::Debug for ScopeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeLayer").finish_non_exhaustive()
    }
}

impl Default for ScopeLayer {
    fn default() -> Self {
        ScopeLayer::new()
    }
}

impl ScopeLayer {
    /// Scopes named by the request's method (`"GET"`, `"POST"`, ...; `"HTTP"` for a method
    /// outside the standard ones), with no deadline and no features.
    pub fn new() -> ScopeLayer {
        ScopeLayer::with(|request| Scope::builder().name(method_name(&request.method)))
    }

    /// Scopes built by `make` from each request's head (method, URI, headers, extensions):
    /// its name, deadline, concurrency limit, metrics, tracer, ...
    ///
    /// An invalid option (a zero timeout, say) fails every request with `500 Internal Server
    /// Error` and an `error` event; check the builder once at start-up with
    /// [`ScopeBuilder::build`] if it is computed.
    pub fn with<F>(make: F) -> ScopeLayer
    where
        F: Fn(&Parts) -> ScopeBuilder + Send + Sync + 'static,
    {
        ScopeLayer {
            make: Arc::new(make),
            remote_parent: false,
        }
    }

    /// With `true`, each request's scope continues the caller's trace: its span's parent is
    /// the remote span in the request's W3C `traceparent` header (see
    /// [`ScopeBuilder::remote_parent`]). Off by default: turn it on for services whose callers
    /// you trust to send trace context (not on an edge facing the internet, where a caller
    /// could pick your trace ids).
    ///
    /// *Features `tower` and `otel`.*
    ///
    /// ```
    /// use go_go_scope::{Scope, ScopeTracer, tower::ScopeLayer};
    ///
    /// let layer = ScopeLayer::with(|_| Scope::builder().name("GET /orders").tracer(ScopeTracer::global()))
    ///     .remote_parent_from_headers(true);
    /// # drop(layer);
    /// ```
    #[cfg(feature = "otel")]
    pub fn remote_parent_from_headers(mut self, on: bool) -> ScopeLayer {
        self.remote_parent = on;
        self
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = ScopeService<S>;

    fn layer(&self, inner: S) -> ScopeService<S> {
        ScopeService {
            inner,
            make: Arc::clone(&self.make),
            remote_parent: self.remote_parent,
        }
    }
}

/// The service [`ScopeLayer`] wraps around `S`.
#[derive(Clone)]
pub struct ScopeService<S> {
    inner: S,
    make: Arc<MakeBuilder>,
    remote_parent: bool,
}

impl<S: std::fmt::Debug> std::fmt::Debug for ScopeService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The response future of [`ScopeService`]: the request's scope runs inside it, and dropping it
/// cancels the scope.
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ScopeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was not driven to readiness stays behind for the next request; the
        // ready one serves this request (tower's usual pattern for services that are `Clone`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = request.into_parts();
        #[allow(unused_mut)]
        let mut builder = (self.make)(&parts);
        #[cfg(feature = "otel")]
        if self.remote_parent {
            builder = builder.remote_parent(&parts.headers);
        }
        #[cfg(not(feature = "otel"))]
        let _ = self.remote_parent;
        Box::pin(async move {
            let answered = Scope::run(builder, move |scope| {
                parts.extensions.insert(scope);
                inner.call(Request::from_parts(parts, body))
            })
            .await;
            match answered {
                Ok(response) => response,
                Err(error) => Ok(error_response(&error)),
            }
        })
    }
}

/// The response for a request whose scope ended before the handler answered.
fn error_response<B: Default>(error: &Error) -> Response<B> {
    let status = match error {
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::Cancelled { .. } => StatusCode::SERVICE_UNAVAILABLE,
        other => {
            tracing::error!(
                error = crate::util::log::LoggedError::of(other).field(),
                "request scope failed"
            );
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// The method as a bounded label: the standard methods by name, any other as `"HTTP"`.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_bounded() {
        assert_eq!(method_name(&Method::GET), "GET");
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_name(&odd), "HTTP");
    }

    #[test]
    fn scope_errors_map_to_statuses() {
        let timeout = Error::Timeout {
            after: std::time::Duration::from_millis(5),
            scope_or_task: crate::TimeoutOrigin::Scope("GET".into()),
        };
        let r: Response<String> = error_response(&timeout);
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let r: Response<String> = error_response(&Error::Cancelled {
            reason: "shutdown".into(),
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r: Response<String> = error_response(&Error::NoRuntime);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
