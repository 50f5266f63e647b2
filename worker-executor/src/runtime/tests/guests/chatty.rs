// Logs ~200 KiB (more than the 64 KiB log cap) and then succeeds: eprintln!
// panics if a write fails, so this only passes if stderr never fails.
fn main() {
    let line = "é".repeat(50); // 100 bytes, multi-byte characters
    for i in 0..2048 {
        eprintln!("{i:04} {line}");
    }
    print!("\"done\"");
}
