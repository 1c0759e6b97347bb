use go_go_scope::try_go;

fn main() {
    let (_err, _port) = try_go!("80".parse::<u16>(), "443".parse::<u16>());
}
