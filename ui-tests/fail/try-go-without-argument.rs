use go_go_scope::prelude::*;

fn main() {
    let (_err, _value): (Option<String>, Option<u32>) = try_go!();
}
