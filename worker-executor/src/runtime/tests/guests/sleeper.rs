// Sleeps for the number of milliseconds given as input, then reports how
// long it measured (monotonic clock) as JSON.
use std::io::Read;
use std::time::{Duration, Instant};

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("read stdin");
    let ms: u64 = input.trim().parse().expect("a number of milliseconds");
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    print!("{}", started.elapsed().as_millis());
}
