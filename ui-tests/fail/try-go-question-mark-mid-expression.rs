use go_go_scope::try_go_raw;

fn doubled(text: &str) -> Result<u32, std::num::ParseIntError> {
    let (_err, value) = try_go_raw!(text.parse::<u32>()?.checked_mul(2).unwrap_or(0));
    Ok(value.unwrap_or(0))
}

fn main() {
    let _ = doubled("21");
}
