use go_go_scope::try_go;

fn main() {
    let (_err, _port) = try_go!(crate = "go_go_scope" "8080".parse::<u16>());
}
