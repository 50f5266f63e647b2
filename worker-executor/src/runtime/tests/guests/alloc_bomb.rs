// Asks for 1 GiB at once; Rust's alloc-error handler aborts (a trap) when
// the runtime refuses to grow memory.
fn main() {
    let v = vec![1u8; 1 << 30];
    std::hint::black_box(&v);
    println!("{}", v.len());
}
