// A `return` or `?` inside a nested closure belongs to that closure: `try_go!` accepts it.
use go_go_scope::try_go;

fn main() {
    let first_even = |values: &[u32]| -> Option<u32> {
        let (_err, found) = try_go!(values.iter().copied().find(|v| {
            if v % 2 == 0 {
                return true;
            }
            false
        }));
        found
    };
    assert_eq!(first_even(&[1, 4, 5]), Some(4));
    let (err, parsed) = try_go!((|| -> Result<u32, std::num::ParseIntError> { Ok("7".parse::<u32>()? + 1) })());
    assert!(err.is_none());
    assert_eq!(parsed, Some(8));
}
