//! `keel`: the server binary (not wired yet; issue 7).
fn main() {
    eprintln!("keel: the server is not built yet (issue 7)");
    std::process::exit(2);
}
