// Unbounded recursion that the optimiser cannot turn into a loop.
fn depth(n: u64) -> u64 {
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    1 + depth(std::hint::black_box(n + 1))
}

fn main() {
    println!("{}", depth(0));
}
