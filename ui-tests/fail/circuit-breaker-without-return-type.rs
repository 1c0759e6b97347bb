use go_go_scope::prelude::*;

#[scoped(circuit_breaker(failure_threshold = 3))]
async fn call_payments(amount: u64) {
    let _ = amount;
}

fn main() {
    let _ = call_payments(5);
}
