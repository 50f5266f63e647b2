// A classic mistake: logging with println! pollutes the output.
fn main() {
    println!("starting");
    print!("{{\"ok\":true}}");
}
