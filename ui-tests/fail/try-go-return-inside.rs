use go_go_scope::try_go;

fn port(text: &str) -> Result<u16, String> {
    let (_err, port) = try_go!(return Err(text.to_owned()));
    Ok(port.unwrap_or(80))
}

fn main() {
    let _ = port("8080");
}
