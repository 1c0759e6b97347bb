use go_go_scope::try_go;

#[derive(Debug)]
struct Busy;

fn query() -> Result<u32, Busy> {
    Err(Busy)
}

fn main() {
    let (_err, _row) = try_go!(query());
}
