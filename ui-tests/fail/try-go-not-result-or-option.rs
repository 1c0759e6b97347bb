use go_go_scope::prelude::*;

fn main() {
    let (_err, _value) = try_go!(42_u32);
}
