use go_go_scope::prelude::*;

#[derive(Debug)]
enum PaymentError {
    Declined,
}

#[scoped(circuit_breaker(failure_threshold = 5))]
async fn charge() -> Result<(), PaymentError> {
    Err(PaymentError::Declined)
}

fn main() {
    let _ = charge();
}
