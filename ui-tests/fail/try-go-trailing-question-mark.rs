use go_go_scope::try_go;

fn port(text: &str) -> Result<u16, std::num::ParseIntError> {
    let (_err, port) = try_go!(text.parse::<u16>()?);
    Ok(port.unwrap_or(80))
}

fn main() {
    let _ = port("8080");
}
