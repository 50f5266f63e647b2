// Never finishes: a hot loop that only epoch interruption can stop.
fn main() {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
